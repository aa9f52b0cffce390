//! Trains the learned model: `train --data FILE[,FILE...] --out data/model/weights.bin [--bits 18] [--epochs 12]`.
//!
//! Multinomial logistic regression (benign + 4 attack categories) over the hashed features of
//! `detect::model::features`, trained with AdaGrad SGD, L2 regularisation and a fixed-seed
//! shuffle, so the output is reproducible byte for byte.
use ai_incident_mcp::detect::model::{CLASSES, hashes, softmax, window_features, windows, words};
use ai_incident_mcp::detect::normalize::{normalize, tokenize};
use std::io::Write;

fn class_of(cat: &str) -> usize {
    match cat {
        "prompt_injection" => 1,
        "jailbreak" => 2,
        "data_exfiltration" => 3,
        "privilege_escalation" => 4,
        _ => 0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let data = get("--data").expect("--data FILE");
    let out = get("--out").expect("--out FILE");
    let bits: u32 = get("--bits")
        .map(|s| s.parse().expect("bits"))
        .unwrap_or(16);
    let epochs: usize = get("--epochs")
        .map(|s| s.parse().expect("epochs"))
        .unwrap_or(12);
    let l2: f32 = get("--l2").map(|s| s.parse().expect("l2")).unwrap_or(1e-6);
    let lr: f32 = get("--lr").map(|s| s.parse().expect("lr")).unwrap_or(0.5);
    let benign_w: f32 = get("--benign-weight")
        .map(|s| s.parse().expect("benign weight"))
        .unwrap_or(1.5);

    // Each doc: its windows' feature vectors and its class. Benign docs train on every window
    // (up to 24); attack docs (multiple-instance learning) on the window the current model
    // finds most attack-like, whole-doc features in the first epoch.
    let mut docs: Vec<(Vec<Vec<u32>>, Vec<u32>, usize)> = Vec::new();
    for path in data.split(',') {
        let text = std::fs::read_to_string(path).expect("read data");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let t = v["text"].as_str().expect("text");
            let label = v["label"].as_str().unwrap_or("benign");
            let y = if label == "attack" {
                class_of(v["category"].as_str().unwrap_or(""))
            } else {
                0
            };
            let n = normalize(t);
            let toks = tokenize(&n.text);
            let ws = words(&toks);
            let hs = hashes(&ws);
            let mut wins = Vec::new();
            for (s, e) in windows(ws.len())
                .into_iter()
                .take(if y == 0 { 24 } else { 400 })
            {
                let mut f = Vec::new();
                window_features(&ws, &hs, s, e, bits, &mut f);
                wins.push(f);
            }
            let mut whole = Vec::new();
            window_features(&ws, &hs, 0, ws.len(), bits, &mut whole);
            docs.push((wins, whole, y));
        }
    }
    let dim = 1usize << bits;
    let mut w = vec![0f32; dim * CLASSES];
    let mut g2 = vec![1e-8f32; dim * CLASSES];
    let mut b = [0f32; CLASSES];
    let mut bg2 = [1e-8f32; CLASSES];
    let mut inst: Vec<(usize, usize)> = Vec::new(); // (doc, window) or window = usize::MAX for MIL
    for (di, (wins, _, y)) in docs.iter().enumerate() {
        if *y == 0 {
            for k in 0..wins.len() {
                inst.push((di, k));
            }
        } else {
            inst.push((di, usize::MAX));
        }
    }
    let mut order: Vec<usize> = (0..inst.len()).collect();
    let logits = |w: &[f32], b: &[f32; CLASSES], f: &[u32]| -> [f32; CLASSES] {
        let scale = 1.0 / (f.len().max(1) as f32).sqrt();
        let mut z = [0f32; CLASSES];
        for &h in f {
            let o = h as usize * CLASSES;
            for c in 0..CLASSES {
                z[c] += w[o + c];
            }
        }
        for c in 0..CLASSES {
            z[c] = z[c] * scale + b[c];
        }
        z
    };
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for ep in 0..epochs {
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut loss = 0f64;
        for &ii in &order {
            let (di, k) = inst[ii];
            let (wins, whole, y) = &docs[di];
            let f: &Vec<u32> = if k != usize::MAX {
                &wins[k]
            } else if wins.len() == 1 {
                &wins[0]
            } else if ep == 0 {
                whole
            } else {
                // most attack-like window under the current model
                let mut bi = 0;
                let mut bp = -1f32;
                for (j, wf) in wins.iter().enumerate() {
                    let p = softmax(logits(&w, &b, wf));
                    if p[*y] > bp {
                        bp = p[*y];
                        bi = j;
                    }
                }
                &wins[bi]
            };
            let scale = 1.0 / (f.len().max(1) as f32).sqrt();
            let p = softmax(logits(&w, &b, f));
            loss -= (p[*y].max(1e-9) as f64).ln();
            let sw = if *y == 0 {
                benign_w / (wins.len() as f32).sqrt()
            } else {
                1.0
            };
            for c in 0..CLASSES {
                let g = sw * (p[c] - if c == *y { 1.0 } else { 0.0 });
                bg2[c] += g * g;
                b[c] -= lr * g / bg2[c].sqrt();
                let gs = g * scale;
                for &h in f.iter() {
                    let o = h as usize * CLASSES + c;
                    let gg = gs + l2 * w[o];
                    g2[o] += gg * gg;
                    w[o] -= lr * gg / g2[o].sqrt();
                }
            }
        }
        eprintln!("epoch {ep}: mean loss {:.4}", loss / inst.len() as f64);
    }
    let mut bytes = Vec::with_capacity(12 + 4 * (CLASSES + w.len()));
    bytes.extend_from_slice(b"DTM1");
    bytes.extend_from_slice(&bits.to_le_bytes());
    bytes.extend_from_slice(&(CLASSES as u32).to_le_bytes());
    for x in b.iter().chain(w.iter()) {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let mut fh = std::fs::File::create(&out).expect("create out");
    fh.write_all(&bytes).expect("write");
    eprintln!("wrote {out}: {} docs, {} bytes", docs.len(), bytes.len());
}

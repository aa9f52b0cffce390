#!/usr/bin/env python3
"""k-fold cross-validation of the full engine (rules + learned model) on a labelled JSONL set.

    python3 scripts/cv.py --data eval/dev.jsonl.xz,eval/train.jsonl.xz [--folds 5] [--target-dir target]
                          [--eval-args "--min-f1 0.85 ..."] [--train-args "..."]

Folds: rows are grouped by their first 48 normalised characters (so shared BIPIA contexts and
InjecAgent templates never straddle train and test) and assigned by sha256(group) mod k. For each fold the model is trained on the other k-1 folds
(`target/release/examples/train_model`), the held-out fold is screened with that model
(`target/release/ai-incident-mcp screen --model`), and the concatenated out-of-fold verdicts are scored by
scripts/eval.py. The shipped model (data/model/weights.bin) is trained on all of dev; the
figures to report are these out-of-fold ones.
"""
import argparse, hashlib, json, os, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--folds", type=int, default=5)
ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
ap.add_argument("--train-args", default="")
ap.add_argument("--screen-args", default="")
ap.add_argument("--eval-args", default="")
ap.add_argument("--group-by-source", action="store_true", help="leave-source-group-out instead of random folds")
a = ap.parse_args()

rows = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()]
def fold(r):
    # Rows that share their opening (BIPIA contexts, InjecAgent tool templates, jailbreak
    # templates) stay in one fold, so a context seen in training is never tested on.
    key = r["source"] if a.group_by_source else " ".join(r["text"].lower().split())[:48]
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % a.folds

tmp = tempfile.mkdtemp(prefix="cv-")
rel = os.path.join(a.target_dir, "release")
preds_path = os.path.join(tmp, "oof.jsonl")
with open(preds_path, "w") as out:
    for k in range(a.folds):
        tr = os.path.join(tmp, f"train{k}.jsonl"); te = os.path.join(tmp, f"test{k}.jsonl")
        with open(tr, "w") as ftr, open(te, "w") as fte:
            for r in rows:
                (fte if fold(r) == k else ftr).write(json.dumps(r, ensure_ascii=False) + "\n")
        w = os.path.join(tmp, f"w{k}.bin")
        subprocess.run([os.path.join(rel, "examples", "train_model"), "--data", tr, "--out", w] + a.train_args.split(),
                       check=True, stderr=subprocess.DEVNULL)
        p = subprocess.run([os.path.join(rel, "ai-incident-mcp"), "screen", "--jsonl", te, "--model", w] + a.screen_args.split(),
                           check=True, capture_output=True, text=True)
        out.write(p.stdout)
r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "eval.py"), "--data", a.data,
                    "--predictions", preds_path] + a.eval_args.split())
sys.exit(r.returncode)

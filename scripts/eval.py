#!/usr/bin/env python3
"""Evaluate a screening binary on a labelled JSONL set.

    python3 scripts/eval.py --bin PATH --data FILE[,FILE...] [--min-f1 X --max-fpr Y --max-hn-fpr Z --min-cat-recall W]

FILE may be plain JSONL or `.xz`/`.gz` (the vendored sets: eval/dev.jsonl.xz, eval/train.jsonl.xz).
Runs `PATH screen --jsonl FILE`, reads one JSON verdict per input line
({"id","verdict","risk_score","categories"}), counts flag or block as "attack", and prints
precision, recall, F1, FPR, hard-negative FPR, recall per category and recall/FPR per source.
Exits 1 when a given threshold fails. `--predictions FILE` reads verdicts from a file instead
of running the binary (used by scripts/cv.py); `--bin-args` passes extra arguments; `--errors N`
prints the N worst false positives / negatives.
"""
import argparse, collections, json, os, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaldata import load_rows, plain_copy  # noqa: E402


def load_jsonl(path):
    return load_rows(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--data", required=True)
    ap.add_argument("--predictions")
    ap.add_argument("--bin-args", default="")
    ap.add_argument("--min-f1", type=float)
    ap.add_argument("--max-fpr", type=float)
    ap.add_argument("--max-hn-fpr", type=float)
    ap.add_argument("--min-cat-recall", type=float)
    ap.add_argument("--errors", type=int, default=0)
    a = ap.parse_args()

    rows = load_jsonl(a.data)
    if a.predictions:
        preds = load_jsonl(a.predictions)
    else:
        if not a.bin:
            sys.exit("give --bin PATH or --predictions FILE")
        plain = a.data
        if "," in a.data or a.data.endswith((".xz", ".gz")):
            plain = plain_copy(rows, os.path.join(tempfile.mkdtemp(prefix="eval-"), "data.jsonl"))
        cmd = [a.bin, "screen", "--jsonl", plain] + a.bin_args.split()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
        preds = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    by_id = {str(p["id"]): p for p in preds}
    missing = [r["id"] for r in rows if str(r["id"]) not in by_id]
    if missing:
        sys.exit(f"{len(missing)} inputs have no verdict, e.g. {missing[:3]}")

    tp = fp = tn = fn = 0
    hn = hn_fp = 0
    cat = collections.Counter(); cat_hit = collections.Counter()
    src = collections.defaultdict(lambda: [0, 0, 0, 0])  # attacks, caught, benign, fp
    fps, fns = [], []
    for r in rows:
        p = by_id[str(r["id"])]
        pred = p["verdict"] in ("flag", "block")
        attack = r["label"] == "attack"
        s = src[r.get("source", "?")]
        if attack:
            cat[r["category"]] += 1; s[0] += 1
            if pred:
                tp += 1; cat_hit[r["category"]] += 1; s[1] += 1
            else:
                fn += 1; fns.append((p.get("risk_score", 0), r))
        else:
            s[2] += 1
            if r.get("hard_negative"):
                hn += 1
            if pred:
                fp += 1; s[3] += 1; fps.append((p.get("risk_score", 0), r, p))
                if r.get("hard_negative"):
                    hn_fp += 1
            else:
                tn += 1
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    hn_fpr = hn_fp / hn if hn else 0.0
    print(f"rows {len(rows)}  attacks {tp+fn}  benign {fp+tn}  hard negatives {hn}")
    print(f"precision {prec:.4f}  recall {rec:.4f}  F1 {f1:.4f}  FPR {fpr:.4f}  HN-FPR {hn_fpr:.4f}")
    print("recall per category:")
    for c in sorted(cat):
        print(f"  {c:22s} {cat_hit[c]/cat[c]:.4f}  ({cat_hit[c]}/{cat[c]})")
    print("per source (recall on attacks / FPR on benign):")
    for k in sorted(src):
        a_, c_, b_, f_ = src[k]
        parts = []
        if a_:
            parts.append(f"recall {c_/a_:.4f} ({c_}/{a_})")
        if b_:
            parts.append(f"FPR {f_/b_:.4f} ({f_}/{b_})")
        print(f"  {k:30s} " + "  ".join(parts))
    if a.errors:
        print(f"--- top {a.errors} false positives")
        for sc, r, p in sorted(fps, key=lambda x: -x[0])[: a.errors]:
            rules = sorted({m['rule'] for m in p.get('matches', [])})
            print(f"  {sc:.3f} {r['id']} {rules} {r['text'][:160]!r}")
        print(f"--- {a.errors} false negatives (lowest score first)")
        for sc, r in sorted(fns, key=lambda x: x[0])[: a.errors]:
            print(f"  {sc:.3f} {r['id']} {r['text'][:160]!r}")
    failed = []
    if a.min_f1 is not None and f1 < a.min_f1:
        failed.append(f"F1 {f1:.4f} < {a.min_f1}")
    if a.max_fpr is not None and fpr > a.max_fpr:
        failed.append(f"FPR {fpr:.4f} > {a.max_fpr}")
    if a.max_hn_fpr is not None and hn_fpr > a.max_hn_fpr:
        failed.append(f"HN-FPR {hn_fpr:.4f} > {a.max_hn_fpr}")
    if a.min_cat_recall is not None:
        for c in cat:
            if cat_hit[c] / cat[c] < a.min_cat_recall:
                failed.append(f"recall[{c}] {cat_hit[c]/cat[c]:.4f} < {a.min_cat_recall}")
    if failed:
        print("FAIL: " + "; ".join(failed))
        sys.exit(1)
    print("PASS" if any(x is not None for x in (a.min_f1, a.max_fpr, a.max_hn_fpr, a.min_cat_recall)) else "")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cross-validation of the full engine (rules + n-gram model + naturalness + stacked fusion).

    python3 scripts/cv.py [--data eval/dev.jsonl.xz,eval/train.jsonl.xz] [--group-by-source]
                          [--families corpus|name] [--folds 5 | --folds 0] [--fpr 0.02]
                          [--augment 1.0] [--balance 0] [--bin-dir target/release]
                          [--eval-args "--min-f1 0.85 ..."] [--write-model data/model/weights.bin]

Folds. `--group-by-source` (the figure we steer by): rows are grouped by source family (a source
name without `planted_` and `_clean` / `_benign` / `_attack`, so the attacked and clean halves of
one corpus are held out together) and families are dealt to the folds largest first, each to the
fold with the fewest rows: every source is held out exactly once and never seen in its training.
`--families corpus` (default) also joins the sources one corpus was split into under unrelated
names (SAME_CORPUS); `--folds 0` holds out one family at a time (53 models, ~10 minutes).
Without it (in-distribution): rows grouped by their first 48 normalised characters, fold =
sha256(group) mod k.

Per fold k: the n-gram and naturalness models are trained on the other folds, with carrier
augmentation of those rows (scripts/augment.py, `--augment`) (`examples/train_model`), and the
fusion inputs of fold k are computed with that model
(`train_model features`). Then, per fold k, the fusion is fitted on the out-of-fold inputs of the
*other* folds and its threshold chosen there so the whole verdict keeps `--fpr` (`train_model fuse`), and fold k is
screened by the real binary with that weight file (`ai-incident-mcp screen --model`). The
concatenated verdicts are scored by scripts/eval.py (exit 1 when a given threshold fails).

`--write-model OUT` also trains on all rows and fits the fusion on all out-of-fold inputs: the
shipped `data/model/weights.bin` is made this way.
"""
import argparse, collections, concurrent.futures as cf, hashlib, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaldata import family_folds, load_rows, plain_copy, source_family  # noqa: E402
from augment import augment  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", default="eval/dev.jsonl.xz,eval/train.jsonl.xz")
ap.add_argument("--folds", type=int, default=5,
                help="number of folds; 0 with --group-by-source = one fold per source family")
ap.add_argument("--bin-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release"))
ap.add_argument("--train-args", default="")
ap.add_argument("--fpr", type=float, default=0.02, help="FPR target for the fusion threshold")
ap.add_argument("--eval-args", default="")
ap.add_argument("--group-by-source", action="store_true", help="leave-source(-family)-out folds")
ap.add_argument("--write-model", help="also train on everything and write the shipped weight file here")
ap.add_argument("--augment", type=float, default=1.0,
                help="carrier augmentation of each training set (scripts/augment.py): copies per row; 0 = off")
ap.add_argument("--families", choices=["corpus", "name"], default="corpus",
                help="source families: by name suffix only (before 2026-12-02), or also joining the sources "
                     "one corpus was split into (SAME_CORPUS)")
ap.add_argument("--balance", type=float, default=0.0,
                help="weight each training row by (median source size / its source's size) ** BALANCE")
ap.add_argument("--min-families", type=int, default=1,
                help="learn a model feature only if rows of at least this many source families carry it "
                     "(train_model --min-families; each training row gets its `family`)")
ap.add_argument("--jobs", type=int, default=2)
ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
a = ap.parse_args()

t0 = time.time()
rows = load_rows(a.data)
train_bin = os.path.join(a.bin_dir, "examples", "train_model")
screen_bin = os.path.join(a.bin_dir, "ai-incident-mcp")
for b in (train_bin, screen_bin):
    if not os.path.exists(b):
        sys.exit(f"{b} not found: build with `cargo build --release --bin ai-incident-mcp --example train_model`")


if a.group_by_source:
    folds, fold_of = family_folds(rows, a.folds, corpus=a.families == "corpus")
    a.folds = max(fold_of.values()) + 1
else:
    fold = lambda r: int(hashlib.sha256(" ".join(r["text"].lower().split())[:48].encode()).hexdigest(), 16) % a.folds
    folds = [fold(r) for r in rows]

tmp = tempfile.mkdtemp(prefix="cv-")
if a.group_by_source:
    for k in range(a.folds):
        fams = sorted(f for f, j in fold_of.items() if j == k)
        print(f"fold {k}: {sum(1 for f in folds if f == k)} rows, families {', '.join(fams)}")


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p


def train_fold(k):
    """Model k (trained without fold k, or on everything for k = None) + fusion inputs of fold k."""
    tag = "all" if k is None else str(k)
    trows = [r for r, f in zip(rows, folds) if f != k]
    if a.balance > 0:
        n = collections.Counter(r["source"] for r in trows)
        med = sorted(n.values())[len(n) // 2]
        trows = [dict(r, weight=(med / n[r["source"]]) ** a.balance) for r in trows]
    if a.min_families > 1:
        trows = [dict(r, family=source_family(r["source"], a.families == "corpus")) for r in trows]
    if a.augment > 0:
        trows = trows + augment(trows, a.augment)
    tr = plain_copy(trows, os.path.join(tmp, f"train{tag}.jsonl"))
    w = os.path.join(tmp, f"w{tag}.bin")
    extra = ["--min-families", str(a.min_families)] if a.min_families > 1 else []
    run([train_bin, "--data", tr, "--out", w] + extra + a.train_args.split())
    if k is None:
        return w
    te = plain_copy([r for r, f in zip(rows, folds) if f == k], os.path.join(tmp, f"test{k}.jsonl"))
    feats = os.path.join(tmp, f"x{k}.jsonl")
    run([train_bin, "features", "--model", w, "--data", te, "--out", feats])
    return w


jobs = list(range(a.folds)) + ([None] if a.write_model else [])
with cf.ThreadPoolExecutor(max_workers=a.jobs) as ex:
    models = dict(zip(jobs, ex.map(train_fold, jobs)))
print(f"models trained ({time.time() - t0:.0f}s)")


def screen_fold(k):
    others = ",".join(os.path.join(tmp, f"x{j}.jsonl") for j in range(a.folds) if j != k)
    w2 = os.path.join(tmp, f"w{k}-fused.bin")
    run([train_bin, "fuse", "--model", models[k], "--features", others, "--out", w2, "--fpr", str(a.fpr)])
    p = run([screen_bin, "screen", "--jsonl", os.path.join(tmp, f"test{k}.jsonl"), "--model", w2])
    return p.stdout


with cf.ThreadPoolExecutor(max_workers=a.jobs) as ex:
    outs = list(ex.map(screen_fold, range(a.folds)))
preds_path = os.path.join(tmp, "oof.jsonl")
with open(preds_path, "w") as f:
    f.write("".join(outs))
if a.write_model:
    allx = ",".join(os.path.join(tmp, f"x{j}.jsonl") for j in range(a.folds))
    run([train_bin, "fuse", "--model", models[None], "--features", allx, "--out", a.write_model, "--fpr", str(a.fpr)])
    print(f"wrote {a.write_model} ({os.path.getsize(a.write_model)} bytes)")
print(f"out-of-fold verdicts ready ({time.time() - t0:.0f}s); {'leave-source-out' if a.group_by_source else 'in-distribution'} CV:")
data_plain = plain_copy(rows, os.path.join(tmp, "all.jsonl"))
r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval.py"),
                    "--data", data_plain, "--predictions", preds_path] + a.eval_args.split())
print(f"cv.py total {time.time() - t0:.0f}s" + (f"; kept {tmp}" if a.keep else ""))
if not a.keep:
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(r.returncode)

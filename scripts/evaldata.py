"""Reading the labelled sets: JSONL, plain or compressed (`.xz`, `.gz`), one or several files.

    from evaldata import load_rows, plain_copy
    rows = load_rows("eval/dev.jsonl.xz,eval/train.jsonl.xz")

The vendored sets live in `eval/` (see eval/SOURCES.md and eval/TRAIN_SOURCES.md for origins and
licences). `plain_copy` writes rows to an uncompressed JSONL file for the Rust tools.
"""
import collections, gzip, json, lzma, os


def _open(path):
    if path.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def load_rows(paths):
    """Rows of every file in the comma-separated `paths`, in order."""
    rows = []
    for p in paths.split(","):
        p = p.strip()
        if not p:
            continue
        if not os.path.exists(p):
            raise SystemExit(f"data file {p} not found (the vendored sets are eval/dev.jsonl.xz and eval/train.jsonl.xz)")
        with _open(p) as f:
            rows.extend(json.loads(l) for l in f if l.strip())
    return rows


def plain_copy(rows, path):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


# Sources built from one corpus under names the suffix rule cannot join (eval/TRAIN_SOURCES.md):
# garak_clean_contexts is garak's latent-injection documents with the marker removed plus
# PromptInject's app prompts, so it is the clean half of garak_latent_injection and promptinject;
# humaneval is the corpus whose functions code_clean and planted_code carry; banking77 is the
# corpus whose queries the support e-mails are made of.
SAME_CORPUS = {
    "garak_clean_contexts": "garak_latent_promptinject",
    "garak_latent_injection": "garak_latent_promptinject",
    "promptinject": "garak_latent_promptinject",
    "humaneval": "code",
    "banking77": "support_email",
}


def source_family(src, corpus=True):
    """The family a source is held out with: `planted_` and `_clean`/`_benign`/`_attack`
    dropped, so a corpus's attacked and clean halves go together; with `corpus`, also the
    sources of `SAME_CORPUS` joined."""
    if corpus and src in SAME_CORPUS:
        return SAME_CORPUS[src]
    s = src[len("planted_"):] if src.startswith("planted_") else src
    for suf in ("_clean", "_benign", "_attack"):
        if s.endswith(suf):
            s = s[: -len(suf)]
    return s


def family_folds(rows, folds, corpus=True):
    """Deals the source families into `folds` folds of similar size (largest first, each to the
    lightest fold; `folds` 0 = one fold per family). Returns (fold of each row, fold of each
    family)."""
    size = collections.Counter(source_family(r["source"], corpus) for r in rows)
    if folds == 0:
        folds = len(size)
    load = [0] * folds
    fold_of = {}
    for fam, n in sorted(size.items(), key=lambda kv: (-kv[1], kv[0])):
        k = min(range(folds), key=lambda i: (load[i], i))
        fold_of[fam] = k
        load[k] += n
    return [fold_of[source_family(r["source"], corpus)] for r in rows], fold_of

"""Reading the labelled sets: JSONL, plain or compressed (`.xz`, `.gz`), one or several files.

    from evaldata import load_rows, plain_copy
    rows = load_rows("eval/dev.jsonl.xz,eval/train.jsonl.xz")

The vendored sets live in `eval/` (see eval/SOURCES.md and eval/TRAIN_SOURCES.md for origins and
licences). `plain_copy` writes rows to an uncompressed JSONL file for the Rust tools.
"""
import gzip, json, lzma, os


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

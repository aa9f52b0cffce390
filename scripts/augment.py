"""Carrier augmentation for training the n-gram model (used by scripts/cv.py --augment).

Attacks reach an agent inside documents (web pages, code, e-mails, tables, tool results) far more
often than any labelled corpus shows, and benign documents come in the same formats. A model that
only sees each format on one side learns the format as evidence: held out by source family, the
model flagged 82 % of the clean web pages, because outside that family HTML came mostly with
attacks. Augmentation makes the format carry no label:

- benign rows of the *training* rows are wrapped in a carrier (HTML page, code, e-mail, Markdown
  table, JSON tool result, log), sometimes after a benign task framing ("Summarise this page."),
  and stay benign;
- short prompt-injection / exfiltration / privilege-escalation rows of the training rows are
  planted into a carrier built from another benign training row, at a random sentence boundary,
  and keep their category.

Only the rows passed in are used (in cross-validation, the training folds), so a held-out family
never leaks into its own model. The carriers and framings are generic templates written here, not
text from any dataset. Deterministic: the same rows give the same output.
"""
import hashlib, json, random, re

FRAMINGS = [
    "Summarize the following page.",
    "Summarise this document in three bullet points.",
    "What does this code do?",
    "Explain the function below.",
    "Reply to this email politely.",
    "Extract the key figures from the table below.",
    "Translate the following text into French.",
    "Answer the question using only the context below.",
    "Here is the tool output. What should I tell the user?",
    "Review this snippet for bugs.",
    "Give me the main points of this article.",
    "Classify the sentiment of this message.",
    "Draft a short summary for the weekly report.",
    "Convert this into a checklist.",
]
TAGS = ["div", "span", "section", "article", "p", "li", "td", "em", "strong", "small", "label"]
CLASSES = ["content", "main", "row", "col-md-6", "card", "nav-item", "footer", "text-muted", "wikitable",
           "sidebar", "btn btn-primary", "container", "header", "mw-body"]
STYLES = ["color: #333;", "margin: 0 auto;", "font-size: 14px;", "background: #f8f8f8;",
          "text-align: center;", "padding: 4px 8px;", "display: none;", "width: 100%;"]
DOMAINS = ["example.org", "example.com", "docs.example.net", "news.example.org", "shop.example.com"]
NAMES = ["Alex Martin", "Priya Shah", "Jordan Lee", "Maria Garcia", "Chen Wei", "Sam Okafor",
         "Lena Fischer", "Tom Becker", "Ana Souza", "Kenji Sato"]
IDENTS = ["value", "items", "result", "config", "total", "buffer", "record", "payload", "index", "name"]


def _rng(*parts):
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def _sentences(text):
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p for p in parts if p.strip()] or [text]


def _words(text, k, rng):
    ws = re.findall(r"[A-Za-z]{3,12}", text) or IDENTS
    return [rng.choice(ws) for _ in range(k)]


def _html(paras, rng):
    title = " ".join(_words(" ".join(paras), 3, rng)).title()
    out = [f"<html><head><title>{title}</title>"]
    if rng.random() < 0.5:
        out.append(f'<meta charset="utf-8"><link rel="stylesheet" href="/static/{rng.choice(IDENTS)}.css">')
    out.append("</head>\n<body>")
    if rng.random() < 0.5:
        out.append(f'<nav class="{rng.choice(CLASSES)}"><a href="https://{rng.choice(DOMAINS)}/">Home</a> | '
                   f'<a href="/{rng.choice(IDENTS)}">{rng.choice(IDENTS).title()}</a></nav>')
    for p in paras:
        t = rng.choice(TAGS)
        attr = ""
        r = rng.random()
        if r < 0.4:
            attr = f' class="{rng.choice(CLASSES)}"'
        elif r < 0.6:
            attr = f' style="{rng.choice(STYLES)}"'
        out.append(f"<{t}{attr}>{p}</{t}>")
    if rng.random() < 0.4:
        cols = _words(" ".join(paras), 3, rng)
        out.append('<table class="wikitable">\n<tr>' + "".join(f"<th>{c.title()}</th>" for c in cols) + "</tr>")
        for _ in range(rng.randint(2, 5)):
            out.append("<tr>" + "".join(f"<td>{rng.randint(1, 9999)}</td>" for _ in cols) + "</tr>")
        out.append("</table>")
    out.append(f'<footer><p>&copy; {rng.randint(2005, 2026)} {rng.choice(DOMAINS)}</p></footer>\n</body></html>')
    return "\n".join(out)


def _code(paras, rng):
    fn = f"{rng.choice(IDENTS)}_{rng.choice(IDENTS)}"
    if rng.random() < 0.5:
        doc = "\n    ".join(paras)
        return (f"def {fn}({rng.choice(IDENTS)}, {rng.choice(IDENTS)}=None):\n    \"\"\"{doc}\"\"\"\n"
                f"    {rng.choice(IDENTS)} = []\n    for i in range({rng.randint(2, 64)}):\n"
                f"        {rng.choice(IDENTS)}.append(i * {rng.randint(2, 9)})\n    return {rng.choice(IDENTS)}\n")
    body = "\n".join(f"// {p}" for p in paras)
    return (f"{body}\nfunction {fn.replace('_', '')}({rng.choice(IDENTS)}) {{\n"
            f"  const {rng.choice(IDENTS)} = {rng.choice(IDENTS)}.map((x) => x + {rng.randint(1, 9)});\n"
            f"  return {rng.choice(IDENTS)}.length > {rng.randint(0, 9)};\n}}\n")


def _email(paras, rng):
    a, b = rng.sample(NAMES, 2)
    subj = " ".join(_words(" ".join(paras), 4, rng)).capitalize()
    return (f"From: {a} <{a.split()[0].lower()}@{rng.choice(DOMAINS)}>\nTo: {b} <{b.split()[0].lower()}@"
            f"{rng.choice(DOMAINS)}>\nSubject: {subj}\nDate: Mon, {rng.randint(1, 28)} Mar 2025 "
            f"{rng.randint(8, 18)}:{rng.randint(10, 59)}:00 +0000\n\nHi {b.split()[0]},\n\n"
            + "\n\n".join(paras) + f"\n\nBest regards,\n{a}\n")


def _table(paras, rng):
    cols = _words(" ".join(paras), 3, rng)
    head = "| " + " | ".join(c.title() for c in cols) + " | Notes |\n|" + "---|" * (len(cols) + 1)
    lines = [head]
    for p in paras:
        lines.append("| " + " | ".join(str(rng.randint(1, 999)) for _ in cols) + f" | {p} |")
    return "\n".join(lines)


def _json(paras, rng):
    items = [{"id": rng.randint(1000, 99999), "title": " ".join(_words(p, 3, rng)).title(), "snippet": p}
             for p in paras]
    return json.dumps({"status": "ok", "count": len(items), "results": items}, ensure_ascii=False, indent=rng.choice([None, 2]))


def _log(paras, rng):
    lvl = ["INFO", "DEBUG", "WARN"]
    return "\n".join(f"2025-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T{rng.randint(10, 23)}:{rng.randint(10, 59)}:"
                     f"{rng.randint(10, 59)}Z {rng.choice(lvl)} [{rng.choice(IDENTS)}] {p}" for p in paras)


CARRIERS = [_html, _html, _code, _email, _table, _json, _log]


def _wrap(paras, rng):
    doc = rng.choice(CARRIERS)(paras, rng)
    if rng.random() < 0.6:
        doc = rng.choice(FRAMINGS) + "\n\n" + doc
    return doc


def _family(r):
    """An augmented row keeps the source family of the row it was made from, if it has one."""
    return {"family": r["family"]} if "family" in r else {}


def augment(rows, frac=0.3, seed="aug1"):
    """Extra training rows from `rows`: about frac copies of each benign row wrapped and of each
    eligible attack planted (frac < 1: that share of the rows, one copy each)."""
    benign = [r for r in rows if r["label"] != "attack" and 40 <= len(r["text"]) <= 3000]
    hosts = [r for r in benign if len(r["text"]) >= 200]
    attacks = [r for r in rows if r["label"] == "attack" and len(r["text"]) <= 600
               and r.get("category") in ("prompt_injection", "data_exfiltration", "privilege_escalation")]
    out = []
    def copies(rng):  # frac 1.6: one copy, and a second for 60 % of the rows
        return int(frac) + (rng.random() < frac - int(frac))

    for r in benign:
        rng = _rng(seed, "b", r["id"])
        for c in range(copies(rng)):
            out.append({"id": f"aug-b{c}-{r['id']}", "text": _wrap(_sentences(r["text"])[:12], rng),
                        "label": "benign", "category": None, "source": "augment_benign",
                        "weight": r.get("weight", 1.0), **_family(r)})
    if hosts:
        for r in attacks:
            rng = _rng(seed, "a", r["id"])
            for c in range(copies(rng)):
                host = _sentences(rng.choice(hosts)["text"])[:10]
                host.insert(rng.randint(0, len(host)), r["text"].strip())
                out.append({"id": f"aug-a{c}-{r['id']}", "text": _wrap(host, rng), "label": "attack",
                            "category": r["category"], "source": "augment_attack",
                            "weight": r.get("weight", 1.0), **_family(r)})
    return out

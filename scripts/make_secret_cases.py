#!/usr/bin/env python3
"""Writes tests/fixtures/secrets_cases.jsonl: a labelled set for the secret rules.

Every secret is SYNTHETIC: random characters (fixed seed) in the shape the providers
document publicly (prefix, length, alphabet, checksum where the format has one). No real
or leaked key is used. Positives are embedded in sentences, code, config files, shell
history and logs; hard negatives are strings that look like secrets but are not: UUIDs,
git SHAs, SHA-256 digests, base64 images, provider IDs that are public (Stripe `pk_`,
Twilio `AC...` SIDs, object ids), documented example keys and placeholders, documentation
describing key formats, and non-secret values after `password=`/`token:`.

Row fields: id, label ("secret" | "benign"), kind, text, and for positives `secret` (the
exact substring a detector must report; for private keys the BEGIN line).

    python3 scripts/make_secret_cases.py            # writes the fixture
    python3 scripts/make_secret_cases.py --check    # exits 1 if the fixture is stale
"""
import base64
import json
import random
import string
import sys
import uuid
import zlib
import hashlib
from pathlib import Path

SEED = 20261201
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "secrets_cases.jsonl"

R = random.Random(SEED)
A62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
B64 = A62 + "+/"
B64URL = A62 + "-_"
HEX = "0123456789abcdef"
B32 = string.ascii_uppercase + "234567"


def rnd(n, alphabet=A62):
    return "".join(R.choice(alphabet) for _ in range(n))


def b62_6(v):
    out = ""
    for _ in range(6):
        out = A62[v % 62] + out
        v //= 62
    return out


def crc_token(prefix):
    body = rnd(30)
    return f"{prefix}_{body}{b62_6(zlib.crc32(body.encode()))}"


def b64url(obj):
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


WORDS = ["falcon", "river", "maple", "orbit", "canyon", "velvet", "ember", "harbor", "quartz",
         "meadow", "copper", "lantern", "glacier", "pepper", "willow", "cobalt", "sierra", "tundra"]
HOSTS = ["db.internal", "10.0.3.17", "prod-db-1.eu-west-1.rds.amazonaws.com", "mongo-0.mongo",
         "cache.svc.cluster.local", "sql.acme-corp.net"]


def human_password():
    w1, w2 = R.choice(WORDS), R.choice(WORDS)
    sym = R.choice("!@#$%&*?+")
    form = R.randrange(4)
    if form == 0:
        return f"{w1.capitalize()}{R.randint(10, 9999)}{sym}{w2}"
    if form == 1:
        return f"{w1}{sym}{w2.capitalize()}{R.randint(1, 99)}"
    if form == 2:
        return rnd(R.randint(10, 18), A62 + "!#%&*+-=?@^")
    return f"{w1[:3].upper()}{R.randint(100, 999)}{sym}{w2}{R.randint(1, 9)}"


# ───────────── secret generators: (kind, secret, [context templates]) ─────────────
# Context templates use {s} for the secret. Provider keys get neutral or typical names;
# generic rules need the key name in the text, so their templates carry it.

ENV = ["export {name}={s}", "{name}={s}", "{name}=\"{s}\""]


def ctx_provider(name):
    return [
        f"export {name}={{s}}",
        f"{name}={{s}}",
        f"  {name.lower()}: \"{{s}}\"",
        f"{{{{\"{name.lower()}\": \"{{s}}\", \"region\": \"eu-west-1\"}}}}",
        "Can you help? My deploy fails with this key: {s} — what am I doing wrong?",
        "2026-11-28T09:14:03.218Z ERROR auth failed for credential {s} (status=401)",
        f"client = Client(\n    {name.lower()}=\"{{s}}\",\n    timeout=30,\n)",
        "I pasted {s} into the settings page but nothing happened.",
        f"```\n[default]\n{name.lower()} = {{s}}\n```",
        "curl -s -H 'Authorization: Bearer {s}' https://api.example.net/v1/items",
    ]


def gen_positive():
    out = []

    def add(kind, secret, templates, count, gen_again=None):
        for i in range(count):
            s = secret() if callable(secret) else secret
            t = R.choice(templates)
            out.append({"kind": kind, "secret": s, "text": t.format(s=s)})

    add("aws.access_key_id", lambda: R.choice(["AKIA", "ASIA"]) + rnd(16, B32), ctx_provider("AWS_ACCESS_KEY_ID"), 18)
    add("aws.secret_access_key", lambda: rnd(40, B64), [
        "aws_secret_access_key = {s}",
        "export AWS_SECRET_ACCESS_KEY={s}",
        "\"SecretAccessKey\": \"{s}\",",
        "[prod]\naws_access_key_id = AKIA" + rnd(16, B32) + "\naws_secret_access_key = {s}\n",
    ], 14)
    for p in ["ghp", "gho", "ghu", "ghs", "ghr"]:
        add("github.token", lambda p=p: crc_token(p), ctx_provider("GITHUB_TOKEN"), 5)
    add("github.fine_grained_pat", lambda: "github_pat_11" + rnd(20) + "_" + rnd(59), ctx_provider("GH_TOKEN"), 8)
    add("gitlab.token", lambda: R.choice(["glpat-", "glrt-", "gldt-"]) + rnd(20, A62 + "_-"), ctx_provider("GITLAB_TOKEN") + ["PRIVATE-TOKEN: {s}"], 12)
    add("slack.token", lambda: f"xox{R.choice('bp')}-{R.randint(10**9, 10**10)}-{R.randint(10**12, 10**13)}-{rnd(24)}", ctx_provider("SLACK_BOT_TOKEN"), 12)
    add("slack.webhook", lambda: f"https://hooks.slack.com/services/T{rnd(8, string.ascii_uppercase + string.digits)}/B{rnd(10, string.ascii_uppercase + string.digits)}/{rnd(24)}", [
        "SLACK_WEBHOOK_URL={s}", "curl -X POST -d '{{\"text\":\"deploy done\"}}' {s}", "webhook: {s}"], 8)
    add("stripe.secret_key", lambda: R.choice(["sk_live_", "rk_live_", "sk_test_"]) + "51" + rnd(R.choice([24, 40, 97])), ctx_provider("STRIPE_SECRET_KEY") + ["Stripe.api_key = '{s}'"], 16)
    add("stripe.webhook_secret", lambda: "whsec_" + rnd(32), ctx_provider("STRIPE_WEBHOOK_SECRET"), 6)
    add("google.api_key", lambda: "AIza" + rnd(35, A62 + "-_"), ctx_provider("GOOGLE_API_KEY") + ["<script src=\"https://maps.googleapis.com/maps/api/js?key={s}&callback=initMap\"></script>"], 14)
    add("google.oauth_client_secret", lambda: "GOCSPX-" + rnd(28, A62 + "-_"), ["\"client_secret\": \"{s}\"", "GOOGLE_CLIENT_SECRET={s}", "oauth secret is {s}"], 6)
    add("azure.storage", lambda: rnd(86, B64) + "==", [
        "DefaultEndpointsProtocol=https;AccountName=acme" + rnd(6, string.ascii_lowercase) + ";AccountKey={s};EndpointSuffix=core.windows.net",
        "AZURE_STORAGE_CONNECTION_STRING=\"DefaultEndpointsProtocol=https;AccountName=logs;AccountKey={s}\"",
        "conn = BlobServiceClient.from_connection_string('AccountName=x;AccountKey={s}')",
    ], 10)
    add("azure.shared_access_key", lambda: rnd(43, B64) + "=", [
        "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={s}",
        "EVENTHUB=Endpoint=sb://ev.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={s};EntityPath=logs",
    ], 6)
    add("azure.entra_client_secret", lambda: rnd(3, A62) + str(R.randint(0, 9)) + "Q~" + rnd(34, A62 + "_~.-"), ["AZURE_CLIENT_SECRET={s}", "\"clientSecret\": \"{s}\"", "client secret {s} expires in 90 days"], 8)
    add("openai.api_key", lambda: R.choice([
        "sk-proj-" + rnd(R.choice([48, 74, 156]), A62 + "-_"),
        "sk-svcacct-" + rnd(64, A62 + "-_"),
        "sk-" + rnd(20) + "T3BlbkFJ" + rnd(20),
    ]), ctx_provider("OPENAI_API_KEY") + ["openai.api_key = \"{s}\""], 18)
    add("anthropic.api_key", lambda: "sk-ant-api03-" + rnd(93, A62 + "-_") + "AA", ctx_provider("ANTHROPIC_API_KEY") + ["x-api-key: {s}"], 12)
    add("huggingface.token", lambda: "hf_" + rnd(34), ctx_provider("HF_TOKEN"), 6)
    add("twilio.api_key", lambda: "SK" + rnd(32, HEX), ctx_provider("TWILIO_API_KEY"), 6)
    add("twilio.auth_token", lambda: rnd(32, HEX), ["TWILIO_AUTH_TOKEN={s}", "twilio_auth_token: \"{s}\"", "export TWILIO_AUTH_TOKEN={s}"], 6)
    add("sendgrid.api_key", lambda: "SG." + rnd(22, A62 + "-_") + "." + rnd(43, A62 + "-_"), ctx_provider("SENDGRID_API_KEY"), 10)
    add("npm.token", lambda: crc_token("npm"), ["//registry.npmjs.org/:_authToken={s}", "NPM_TOKEN={s}", "npm token is {s}"], 10)
    add("pypi.token", lambda: "pypi-AgEIcHlwaS5vcmc" + rnd(R.choice([60, 120, 160]), B64URL), ["[pypi]\n  username = __token__\n  password = {s}", "TWINE_PASSWORD={s}", "uv publish --token {s}"], 10)

    def jwt():
        alg = R.choice(["HS256", "RS256", "ES256", "HS512"])
        h = b64url({"alg": alg, "typ": "JWT"} if R.random() < 0.7 else {"typ": "JWT", "alg": alg, "kid": rnd(8)})
        p = b64url({"sub": f"user-{R.randint(1000, 99999)}", "iat": R.randint(1700000000, 1790000000), "scope": R.choice(["read", "admin", "read write"])})
        return f"{h}.{p}.{rnd(R.choice([43, 86, 342]), B64URL)}"
    add("jwt.token", jwt, ["Authorization: Bearer {s}", "Cookie: session={s}; Path=/", "here's the token from the login response: {s}", "{{\"access_token\": \"{s}\", \"expires_in\": 3600}}"], 20)

    def pem():
        kind = R.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "])
        body = base64.b64encode(bytes(R.randrange(256) for _ in range(R.choice([120, 400, 900])))).decode()
        lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"
    for _ in range(16):
        k = pem()
        t = R.choice(["{s}", "Here is the deploy key, please add it:\n{s}\nthanks", "\"private_key\": \"{j}\",", "cat ~/.ssh/id_ed25519\n{s}"])
        text = t.format(s=k, j=k.replace("\n", "\\n"))
        out.append({"kind": "private_key.pem", "secret": k.split("\n")[0], "text": text})

    def dburl():
        scheme = R.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp", "mariadb"])
        pw = rnd(R.randint(10, 20), A62 + "-_.~") if R.random() < 0.5 else human_password().replace("@", "%40").replace("#", "%23").replace("?", "%3F").replace("/", "%2F")
        return scheme, pw
    for _ in range(20):
        scheme, pw = dburl()
        url = f"{scheme}://{R.choice(['app', 'svc_orders', 'admin', 'reporting'])}:{pw}@{R.choice(HOSTS)}:{R.choice([5432, 3306, 27017, 6379, 5672])}/{R.choice(['orders', 'crm', 'hr', '0'])}"
        t = R.choice(["DATABASE_URL={u}", "engine = create_engine(\"{u}\")", "connection refused: {u} (retrying in 5s)", "spring.datasource.url: {u}", "Why can't I connect with {u} from my laptop?"])
        out.append({"kind": "database.url_password", "secret": pw, "text": t.format(u=url)})

    keys = ["api_key", "API_KEY", "apiKey", "api_secret", "access_token", "auth_token", "SECRET_KEY", "client_secret", "secret", "DJANGO_SECRET_KEY", "app_secret", "token"]
    for _ in range(30):
        k = R.choice(keys)
        s = rnd(R.randint(20, 48), A62 + R.choice(["", "-_", "+/"]))
        if not any(c.isdigit() for c in s):
            s = s[:-1] + "7"
        t = R.choice(["{k} = \"{s}\"", "{k}={s}", "  {k}: {s}", "\"{k}\": \"{s}\",", "settings.{k} := \"{s}\"", "config[\"x\"] = {{ {k}: '{s}' }}"])
        out.append({"kind": "generic.api_key_assignment", "secret": s, "text": t.format(k=k, s=s)})

    pkeys = ["password", "PASSWORD", "db_password", "DB_PASSWORD", "passwd", "smtp_password", "admin_password", "passphrase", "MYSQL_ROOT_PASSWORD"]
    for _ in range(30):
        k = R.choice(pkeys)
        s = human_password()
        t = R.choice(["{k}={s}", "{k}: \"{s}\"", "{k} = '{s}'", "\"{k}\": \"{s}\"", "I set {k}={s} in the .env but login still fails", "  - {k}={s}"])
        out.append({"kind": "generic.password_assignment", "secret": s, "text": t.format(k=k, s=s)})
    return out


# ───────────── hard negatives ─────────────

def gen_negative():
    out = []

    def add(kind, texts):
        for t in texts:
            out.append({"kind": kind, "text": t})

    def u():
        return str(uuid.UUID(int=R.getrandbits(128), version=4))

    def sha1():
        return hashlib.sha1(rnd(20).encode()).hexdigest()

    def sha256():
        return hashlib.sha256(rnd(20).encode()).hexdigest()

    add("uuid", [R.choice([
        "request_id={u} completed in 32ms",
        "Order {u} was shipped yesterday, can you check the status?",
        "{{\"id\": \"{u}\", \"type\": \"invoice\"}}",
        "trace_id: {u}",
        "2026-11-28T09:14:03Z INFO session {u} opened for user 4821",
        "DELETE /api/v1/incidents/{u} HTTP/1.1",
        "correlation-id: {u}",
    ]).format(u=u()) for _ in range(45)])
    add("git_sha", [R.choice([
        "commit {h}\nAuthor: Dev <dev@example.org>\n\n    fix flaky test",
        "Reverted in {h}, see the PR for details.",
        "https://github.com/acme/app/commit/{h}",
        "git checkout {h} && cargo build",
        "pinned: actions/checkout@{h}",
        "sha: {h}",
    ]).format(h=sha1()) for _ in range(40)])
    add("sha256", [R.choice([
        "sha256:{h}",
        "image: ghcr.io/acme/api@sha256:{h}",
        "checksum = \"{h}\"",
        "{h}  release-v1.4.2.tar.gz",
        "The file hash is {h}, matching the published one.",
        "\"integrity\": \"sha512-" + base64.b64encode(hashlib.sha512(rnd(8).encode()).digest()).decode() + "\"",
    ]).format(h=sha256()) for _ in range(40)])
    add("base64_image", [
        R.choice(["<img src=\"data:image/png;base64,{b}\" alt=\"logo\">", "background: url(data:image/gif;base64,{b});", "{{\"thumbnail\": \"data:image/jpeg;base64,{b}\"}}"]).format(
            b="iVBORw0KGgo" + base64.b64encode(bytes(R.randrange(256) for _ in range(R.choice([300, 1200])))).decode())
        for _ in range(25)])
    add("public_id", [R.choice([
        "customer cus_{a} has two open invoices",
        "payment_intent: pi_{b}",
        "STRIPE_PUBLISHABLE_KEY=pk_live_51{c}",
        "const stripe = Stripe('pk_test_51{c}');",
        "Twilio account SID AC{h}",
        "arn:aws:iam::{n}:role/deploy-{w}",
        "Account ID {n} in us-east-1",
        "mongo id ObjectId(\"{o}\")",
        "ULID 01{ul}",
        "channel C0{ch} in workspace T0{ch}",
        "GA tracking id UA-{n5}-1",
        "pod api-7f{o5}-x2k9q restarted",
        "AKIA prefix means a long-term key; ASIA a temporary one.",
    ]).format(a=rnd(14), b=rnd(24), c=rnd(40), h=rnd(32, HEX), n=R.randint(10**11, 10**12 - 1), w=R.choice(WORDS),
               o=rnd(24, HEX), ul=rnd(24, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), ch=rnd(8, string.ascii_uppercase + string.digits),
               n5=R.randint(10000, 99999), o5=rnd(8, HEX)) for _ in range(45)])
    add("placeholder", [R.choice([
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "OPENAI_API_KEY=sk-proj-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "api_key = \"<your-api-key>\"",
        "API_KEY=YOUR_API_KEY_HERE",
        "export OPENAI_API_KEY=${OPENAI_API_KEY}",
        "token: ${{ secrets.GITHUB_TOKEN }}",
        "api_key = os.environ[\"API_KEY\"]",
        "password=<your password>",
        "password: ********",
        "DB_PASSWORD=changeme",
        "postgres://user:password@localhost:5432/mydb",
        "mysql://USER:PASSWORD@HOST:3306/DB",
        "SLACK_WEBHOOK=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "ANTHROPIC_API_KEY=sk-ant-api03-your-key-here",
        "secret_key = \"{{ vault_secret_key }}\"",
        "token = \"{tok}\"".replace("{tok}", "0" * 40),
        "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=<account-key>",
        "password = \"%(db_password)s\"",
        "client_secret: REPLACE_ME",
        "glpat-xxxxxxxxxxxxxxxxxxxx",
        "npm_config_cache=/tmp/npm-cache",
    ]) for _ in range(45)])
    add("format_docs", [R.choice([
        "AWS access key IDs start with AKIA (long-term) or ASIA (temporary) and are 20 characters long.",
        "GitHub personal access tokens begin with ghp_ and fine-grained ones with github_pat_.",
        "A JWT has three base64url parts separated by dots: header.payload.signature.",
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        "Never paste -----BEGIN OPENSSH PRIVATE KEY----- blocks into chat.",
        "Stripe secret keys look like sk_live_ followed by random characters; publishable keys start with pk_.",
        "Slack bot tokens start with xoxb- and user tokens with xoxp-.",
        "The connection string format is postgres://USER:PASSWORD@HOST:PORT/DB.",
        "Set api_key in the config file; see the docs for where to find it.",
        "Google API keys begin with AIza and are 39 characters.",
        "SendGrid keys begin with SG. followed by two base64 segments.",
        "PyPI API tokens start with pypi- and are used with the username __token__.",
        "Use `password=` only in local dev; production reads PASSWORD from the vault.",
        "The token field is a string, e.g. token: string (required).",
        "Anthropic keys are prefixed sk-ant-; OpenAI project keys sk-proj-.",
    ]) for _ in range(40)])
    add("password_words", [R.choice([
        "password=<your password>",
        "password: required",
        "password = request.form['password']",
        "password = getpass.getpass(\"Password: \")",
        "password=os.getenv(\"DB_PASSWORD\")",
        "\"password\": \"string\",",
        "password: ${DB_PASSWORD}",
        "password=$MYSQL_PASSWORD",
        "The password must be at least 12 characters and include a digit.",
        "password = self.settings.db_password",
        "hashed_password: $2b$12$" + rnd(53, A62 + "./"),
        "password_hash = \"" + sha256() + "\"",
        "Forgot password? Click the reset link we emailed you.",
        "pwd: /home/deploy/releases/current",
        "--password-file=/run/secrets/db_password",
        "password=None",
        "password: !vault |",
        "secret: false",
        "token: string",
        "next_page_token: \"" + rnd(40, B64URL) + "\"",
        "csrf_token = \"" + rnd(32) + "\"",
        "access_token_url: https://oauth.example.org/token",
        "secret_name = \"prod/db/credentials\"",
        "password: '{{ lookup(\"env\", \"DB_PASS\") }}'",
    ]) for _ in range(45)])
    add("random_ids", [R.choice([
        "Build #{n} finished: artifact build-{h8}.zip",
        "tx hash 0x{h64}",
        "Your verification code is {n6}.",
        "ISBN 978-{n6}{n3}",
        "tracking number 1Z{up16}",
        "version 4.2.1+{h8}",
        "etag: \"{h32}\"",
        "Docker container {h12} exited with code 137",
    ]).format(n=R.randint(1000, 99999), h8=rnd(8, HEX), h64=rnd(64, HEX), n6=R.randint(100000, 999999), n3=R.randint(100, 999),
               up16=rnd(16, string.ascii_uppercase + string.digits), h32=rnd(32, HEX), h12=rnd(12, HEX)) for _ in range(35)])
    return out


def build():
    pos = gen_positive()
    neg = gen_negative()
    rows = []
    for i, p in enumerate(pos):
        rows.append({"id": f"sec-pos-{i:04d}", "label": "secret", "kind": p["kind"], "secret": p["secret"], "text": p["text"]})
    for i, n in enumerate(neg):
        rows.append({"id": f"sec-neg-{i:04d}", "label": "benign", "kind": n["kind"], "text": n["text"]})
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), len(pos), len(neg)


def main():
    data, npos, nneg = build()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != data:
            print(f"{OUT} is stale; run scripts/make_secret_cases.py", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(data)
    print(f"wrote {OUT}: {npos} positives, {nneg} hard negatives", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Drives the e-mail intake with Python's smtplib (a real SMTP client) and prints one JSON
object with the server's reply codes, for tests/intake.rs to check.

usage: smtp_client.py HOST PORT
"""

import json
import smtplib
import sys
from email.message import EmailMessage


def report_mail(msg_id):
    m = EmailMessage()
    m["From"] = "Bob Reporter <bob@example.com>"
    m["To"] = "incidents@example.com"
    m["Subject"] = "[severity: high] support bot leaked a customer address"
    m["Message-ID"] = msg_id
    m.set_content("type: security\nThe support bot showed customer 42's address to customer 7.\n")
    m.add_alternative(
        "<html><body><p>The <b>support bot</b> showed customer 42's address.</p>"
        "<script>alert(1)</script></body></html>",
        subtype="html",
    )
    m.add_attachment(b"\x00\x01\x02" * 100, maintype="application", subtype="octet-stream",
                     filename="chat-log.bin")
    return m


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    out = {}
    with smtplib.SMTP(host, port, timeout=10) as s:
        code, ehlo = s.ehlo("client.test")
        out["ehlo"] = code
        out["size_advertised"] = s.has_extn("size")
        # 1. a report, with HTML alternative and an attachment
        out["send"] = list(send(s, "bob@example.com", ["incidents@example.com"],
                                report_mail("<r1@example.com>").as_bytes()))
        # 2. the same mail again (a client retry): same incident, no second one
        out["resend"] = list(send(s, "bob@example.com", ["incidents@example.com"],
                                  report_mail("<r1@example.com>").as_bytes()))
        # 3. an unknown recipient
        s.rset()
        s.mail("bob@example.com")
        out["unknown_rcpt"] = list(s.rcpt("someone-else@example.com"))
        out["data_without_rcpt"] = list(s.docmd("DATA"))
        s.rset()
        # 4. announced too big
        out["mail_size_too_big"] = list(s.mail("bob@example.com", ["SIZE=99999999"]))
        s.rset()
        # 5. too big without announcing it
        big = b"From: bob@example.com\r\nSubject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
        big = big * 200
        out["oversize"] = list(send(s, "bob@example.com", ["incidents@example.com"], big))
        # 6. malformed: no header at all
        out["malformed"] = list(send(s, "bob@example.com", ["incidents@example.com"],
                                     b"this is not a mail\r\n"))
        # 7. no sender address anywhere
        out["no_sender"] = list(send(s, "", ["incidents@example.com"],
                                     b"Subject: who am I\r\n\r\nsomething broke\r\n"))
        # the session still works
        out["noop"] = list(s.noop())
    for k, v in out.items():
        if isinstance(v, list) and len(v) == 2 and isinstance(v[1], bytes):
            out[k] = [v[0], v[1].decode()]
    print(json.dumps(out))


def send(s, sender, rcpts, data):
    """MAIL, RCPT, DATA by hand so every reply code is seen (sendmail raises on the first)."""
    code, msg = s.mail(sender)
    if code != 250:
        return code, msg
    for r in rcpts:
        code, msg = s.rcpt(r)
        if code != 250:
            return code, msg
    return s.data(data)


if __name__ == "__main__":
    main()

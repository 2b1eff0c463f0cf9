"""Real receivers for retouchd's notifications, for the integration tests.

    python notify_receivers.py RECORDS README WEBHOOK_SECRET NTFY_TOKEN SMTP_USER SMTP_PASSWORD CERT KEY

Starts, on loopback ports it prints as one JSON line ({"http": port, "smtp": port}):
- an HTTP server: POST /hook is a webhook receiver that verifies the signature with the
  verification snippet from the README (the code block after `<!-- webhook-verification -->`),
  and also checks that the snippet rejects a forged body, a wrong secret and a replayed time;
  POST / is an ntfy server that checks the JSON publishing format against ntfy's documented
  fields and the access token. While a file `RECORDS.down` exists, both answer 503.
- an SMTP server (aiosmtpd) that wants STARTTLS (with CERT and KEY) and then a login.
Every request is appended to RECORDS as one JSON line.
"""

import json
import logging
import os
import re
import socket
import ssl
import sys
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

# aiosmtpd 1.4 logs a warning about an attribute it sets itself at each login.
logging.getLogger("mail.log").setLevel(logging.ERROR)
records_path, readme, secret, ntfy_token, smtp_user, smtp_password, cert, key = sys.argv[1:9]
lock = threading.Lock()


def record(entry):
    with lock, open(records_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def load_snippet():
    text = open(readme, encoding="utf-8").read()
    match = re.search(r"<!-- webhook-verification -->\s*```python\n(.*?)```", text, re.S)
    if not match:
        sys.exit("the README has no webhook verification snippet")
    scope = {}
    exec(match.group(1), scope)  # the documented snippet, as a reader would paste it
    return scope["verify"]


verify = load_snippet()

# ntfy's JSON publishing fields (https://docs.ntfy.sh/publish/#publish-as-json).
NTFY_FIELDS = {"topic", "message", "title", "tags", "priority", "actions", "click", "attach",
               "markdown", "icon", "filename", "delay", "email", "call"}


def ntfy_problems(doc, auth):
    problems = []
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    unknown = set(doc) - NTFY_FIELDS
    if unknown:
        problems.append(f"unknown fields {sorted(unknown)}")
    if not isinstance(doc.get("topic"), str) or not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", doc["topic"]):
        problems.append("topic")
    for key in ("message", "title"):
        if key in doc and not isinstance(doc[key], str):
            problems.append(key)
    if "priority" in doc and doc["priority"] not in (1, 2, 3, 4, 5):
        problems.append("priority")
    if "tags" in doc and not (isinstance(doc["tags"], list) and all(isinstance(t, str) for t in doc["tags"])):
        problems.append("tags")
    if auth != f"Bearer {ntfy_token}":
        problems.append("access token")
    return problems


class Http(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if os.path.exists(records_path + ".down"):
            record({"kind": "refused_while_down", "path": self.path})
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/hook":
            header = self.headers.get("Retouchd-Signature", "")
            ok = verify(secret.encode(), header, body)
            forged_rejected = (
                not verify(secret.encode(), header, body.replace(b'"', b"'", 1))
                and not verify(b"not-the-secret-0123456789", header, body)
                and not verify(secret.encode(), re.sub(r"t=\d+", "t=1000000000", header), body)
            )
            doc = json.loads(body) if ok else None
            record({"kind": "webhook", "verified": ok, "forged_rejected": forged_rejected,
                    "event_header": self.headers.get("Retouchd-Event"),
                    "id_header": self.headers.get("Retouchd-Event-Id"), "notice": doc})
            self.send_response(204 if ok else 400)
            self.end_headers()
        elif self.path == "/":
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            problems = ntfy_problems(doc, self.headers.get("Authorization"))
            record({"kind": "ntfy", "problems": problems, "publish": doc})
            self.send_response(200 if not problems else 400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id":"x","event":"message"}')
        else:
            self.send_response(404)
            self.end_headers()


class Mail:
    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        login = None
        if session.authenticated and session.auth_data is not None:
            login = [session.auth_data.login.decode(), session.auth_data.password.decode()]
        record({"kind": "email", "login": login, "tls": session.ssl is not None, "from": envelope.mail_from,
                "to": envelope.rcpt_tos, "subject": message["subject"],
                "body": message.get_body(preferencelist=("plain",)).get_content()})
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    good = auth_data.login == smtp_user.encode() and auth_data.password == smtp_password.encode()
    return AuthResult(success=good, auth_data=auth_data)


http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
threading.Thread(target=http.serve_forever, daemon=True).start()
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
smtp_port = probe.getsockname()[1]
probe.close()
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
smtp = Controller(Mail(), hostname="127.0.0.1", port=smtp_port, authenticator=authenticate,
                  auth_required=True, auth_require_tls=True, tls_context=tls, require_starttls=True)
smtp.start()
print(json.dumps({"http": http.server_address[1], "smtp": smtp_port}), flush=True)
threading.Event().wait()

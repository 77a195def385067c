#!/usr/bin/env python3
"""Checks of a report.html as a headless Chromium renders it (stdlib only).

    check-report-browser.py CHROMIUM PAGE.html SCREENSHOT.png [--expect-images N]

Fails (exit 1, one line per problem) when
  - the page's source names anything to load (src/href/url()/@import of a URL),
  - the screenshot is blank (under 2% of its pixels differ from the page's background),
  - an <img> did not load (the page's script records "TOTAL BROKEN" on <html data-images>),
  - Chromium's net log shows a request for anything but file: or data: URLs.
Chromium runs with the network denied (every host unresolvable, a dead proxy), so a page
that tried to fetch something shows it in the net log and fails to load it.

    check-report-browser.py CHROMIUM --self-test PAGE.html DIR

checks that the checks fail: copies of PAGE with a broken image, with an external image (and
no Content-Security-Policy to stop the request), and with nothing on it must each fail.
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib

DENY = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-sync", "--disable-default-apps", "--no-default-browser-check"]
BASE = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--virtual-time-budget=5000"]


def chromium(exe, args):
    return subprocess.run([exe, *BASE, *DENY, *args], capture_output=True, text=True,
                          timeout=120)


def png_pixels(path):
    """(width, height, channels, rows) of an 8-bit, non-interlaced PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, "unexpected PNG format"
            ch = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, prev, rows = zlib.decompress(idat), w * ch, bytearray(w * ch), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, ch, rows


def inked_share(path):
    """Share of pixels that differ from the top-left pixel (the page's background)."""
    w, h, ch, rows = png_pixels(path)
    bg = tuple(rows[0][:3])
    inked = total = 0
    for line in rows[::4]:
        for x in range(0, w * ch, ch * 4):
            total += 1
            if any(abs(line[x + k] - bg[k]) > 24 for k in range(3)):
                inked += 1
    return inked / max(total, 1)


def static_loads(text):
    """What the page's source would load from elsewhere."""
    pat = r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*|url\(\s*["']?\s*(?:https?:)?//[^)]*\)|@import[^;]*"""
    return re.findall(pat, text, re.I)


def net_requests(log_path):
    """URLs the page asked for, other than file: and data: ones. Chromium's own background
    requests (component updates, its clock, sign-in) carry no initiator ("not an origin") and
    are not the page's; a file:// page's requests carry its opaque origin, "null"."""
    try:
        log = json.load(open(log_path, encoding="utf-8", errors="replace"))
    except ValueError:
        return ["(the net log is unreadable)"]
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = set()
    for e in log["events"]:
        p = e.get("params") or {}
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            if p.get("initiator") != "not an origin" and not p["url"].startswith(("file:", "data:")):
                urls.add(p["url"])
    return sorted(urls)


def check(exe, page, screenshot, expect_images=None):
    problems = []
    url = "file://" + os.path.abspath(page)
    for load in static_loads(open(page, encoding="utf-8").read()):
        problems.append(f"the page loads {load!r}")
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "net.json")
        shot = chromium(exe, [f"--screenshot={screenshot}", "--window-size=1280,2000",
                              f"--log-net-log={log}", url])
        if not os.path.isfile(screenshot):
            problems.append(f"no screenshot: {shot.stderr.strip()[-300:]}")
        else:
            share = inked_share(screenshot)
            if share < 0.02:
                problems.append(f"the page is blank ({share:.1%} of the pixels inked)")
        if os.path.isfile(log):
            for u in net_requests(log):
                problems.append(f"the page requested {u}")
        else:
            problems.append("chromium wrote no net log")
    dom = chromium(exe, ["--dump-dom", url]).stdout
    m = re.search(r'data-images="(\d+) (\d+)"', dom)
    if not m:
        problems.append("the page's image count is missing from the DOM (did it load?)")
    else:
        total, broken = int(m.group(1)), int(m.group(2))
        if broken:
            problems.append(f"{broken} of {total} images did not load")
        if expect_images is not None and total < expect_images:
            problems.append(f"{total} images, expected at least {expect_images}")
    if "<svg" not in dom and "<img" not in dom:
        problems.append("the page shows no chart and no image")
    return problems


def self_test(exe, page, out):
    text = open(page, encoding="utf-8").read()
    no_csp = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    cases = {
        "broken-image": (text.replace("<main>", '<main><img alt="x" src="data:image/png;base64,AAAA">', 1),
                         "images did not load"),
        "external-image": (no_csp.replace("<main>", '<main><img alt="x" src="http://example.invalid/x.png">', 1),
                           "the page requested http://example.invalid/x.png"),
        "blank": (re.sub(r"<body>.*</body>", "<body></body>", text, flags=re.S), "blank"),
    }
    failed = 0
    for name, (html, expected) in cases.items():
        bad = os.path.join(out, f"self-test-{name}.html")
        open(bad, "w", encoding="utf-8").write(html)
        found = check(exe, bad, os.path.join(out, f"self-test-{name}.png"))
        if not any(expected in p for p in found):
            print(f"self-test {name}: the check did not fail with {expected!r}: {found}",
                  file=sys.stderr)
            failed += 1
    return failed


if __name__ == "__main__":
    if sys.argv[2] == "--self-test":
        sys.exit(1 if self_test(sys.argv[1], sys.argv[3], sys.argv[4]) else 0)
    exe, page, screenshot = sys.argv[1:4]
    expect = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--expect-images" else None
    found = check(exe, page, screenshot, expect)
    for p in found:
        print(f"{page}: {p}", file=sys.stderr)
    sys.exit(1 if found else 0)

#!/usr/bin/env python3
"""browser_check: renders an nvs HTML report in headless Chromium and checks it.

Usage: browser_check.py HTML OUTDIR [--expect-incidents N] [--expect-lanes N]
                                    [--expect-events-min N]

1. Asks Chromium for the DOM it built from the page (--dump-dom) and checks the
   page's stable hooks (report/README.md) on that DOM rather than on the file:
   what counts is what the browser made of the markup.
2. Takes a screenshot, OUTDIR/<HTML's stem>.png (1280x2000), and checks that it
   is a real, non-trivial PNG. Its path is printed.

Chromium runs with a fresh profile and a fresh HOME, without network (every
host name resolves to nothing and every request goes to a dead proxy), under a
hard timeout; its stderr is shown when it fails. Standard library only.

Exit status: 0 every check passed; 1 a check failed, or Chromium is missing or
failed; 2 bad usage.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_TIMEOUT_S = 60
# New headless first; Chromium builds before 112 know only the old one.
HEADLESS_MODES = ("--headless=new", "--headless")
COMMON_FLAGS = (
    "--no-sandbox",  # tests run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers have a tiny /dev/shm
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-component-update",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # No network: names resolve to nothing, and literal addresses go to a
    # proxy on the discard port, which refuses. The page must need neither.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--virtual-time-budget=5000",  # let layout settle before the dump or the shot
)
SCREENSHOT_SIZE = "1280,2000"
# A blank 1280x2000 page compresses to about 10 KB; a drawn report is far larger.
MIN_SCREENSHOT_BYTES = 24 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input",
                 "link", "meta", "source", "track", "wbr"}
# Attributes through which a page could fetch something.
REFERENCE_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action",
                        "formaction", "poster", "data", "background"}


class CheckFailed(Exception):
    pass


# ---------------------------------------------------------------------------
# Chromium.

def find_chromium():
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        raise CheckFailed(
            "Chromium is not installed: this test renders the report in a real "
            "browser. Install it with scripts/bootstrap (Debian package "
            "'chromium').")
    return found


def without_noise(stderr):
    """Chromium's stderr without the D-Bus complaints every headless run makes."""
    if not stderr.strip():
        return "(empty)"
    lines = [line for line in stderr.splitlines()
             if "dbus" not in line.lower() and "Failed to connect to the bus" not in line]
    return "\n".join(lines) or "(nothing but D-Bus noise)"


def run_once(chromium, mode, args):
    """Runs Chromium once; returns (returncode or None on timeout, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="nvs-chromium-",
                                     ignore_cleanup_errors=True) as home, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        command = [chromium, mode, *COMMON_FLAGS,
                   f"--user-data-dir={home}/profile", *args]
        # A fresh HOME keeps ~/.config, ~/.pki and crash dumps out of the real one.
        env = dict(os.environ, HOME=home)
        # Its own session, so the browser's helper processes can be ended with
        # it. Output goes to files: a helper still holding a pipe open would
        # block a reader forever.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        out.seek(0)
        err.seek(0)
        return (returncode, out.read(),
                err.read().decode("utf-8", errors="replace"))


def run_chromium(chromium, args, succeeded, what):
    """Runs Chromium headless, in the new mode and then the old; returns stdout
    of the first run `succeeded(returncode, stdout)` accepts."""
    failures = []
    for mode in HEADLESS_MODES:
        started = time.monotonic()
        returncode, stdout, stderr = run_once(chromium, mode, args)
        elapsed = time.monotonic() - started
        if returncode is not None and succeeded(returncode, stdout):
            print(f"chromium {mode} {what}: {elapsed:.1f} s")
            return stdout
        status = (f"timed out after {CHROMIUM_TIMEOUT_S} s" if returncode is None
                  else f"exit status {returncode}")
        failures.append(f"--- chromium {mode} {what}: {status}; stderr:\n"
                        f"{without_noise(stderr)}")
    raise CheckFailed(f"chromium could not {what}:\n" + "\n".join(failures))


# ---------------------------------------------------------------------------
# The DOM, as a small tree (html.parser gives only a stream of tags).

class Node:
    def __init__(self, tag, attrs, parent):
        self.tag = tag
        self.attrs = dict(attrs)
        self.parent = parent
        self.children = []  # Nodes and text strings

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def walk(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_all(self, tag=None, klass=None):
        return [node for node in self.walk()
                if (tag is None or node.tag == tag)
                and (klass is None or klass in node.classes())]

    def text(self):
        return "".join(child if isinstance(child, str) else child.text()
                       for child in self.children)


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.current)
        self.current.children.append(node)
        if tag not in VOID_ELEMENTS:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, attrs, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(dom):
    builder = TreeBuilder()
    builder.feed(dom)
    builder.close()
    return builder.root


# ---------------------------------------------------------------------------
# Checks on the DOM. Each returns a list of problems (empty: fine).

def check_self_contained(root):
    problems = []
    for node in root.walk():
        if node.tag in ("script", "link", "img", "iframe", "object", "embed"):
            problems.append(f"<{node.tag}> in a page that must load nothing")
        for name, value in node.attrs.items():
            if name in REFERENCE_ATTRIBUTES and not (value or "").startswith("#"):
                problems.append(f"<{node.tag} {name}=\"{value}\"> points outside the page")
    for style in root.find_all("style"):
        css = style.text()
        if "@import" in css or "url(" in css.replace("url(#", ""):
            problems.append("the inline CSS refers to something outside the page")
    return problems


def check_incidents(root, expected):
    problems = []
    incidents = root.find_all("section", "incident")
    if expected is not None and len(incidents) != expected:
        problems.append(f"{len(incidents)} incident sections, expected {expected}")
    for section in incidents:
        name = section.attrs.get("id") or "(no id)"
        if not name.startswith("incident-"):
            problems.append(f"incident section id '{name}' does not start with 'incident-'")
        reproduce = section.find_all("pre", "reproduce")
        if not reproduce or not reproduce[0].text().strip():
            problems.append(f"{name}: no pre.reproduce, or it is empty")
        tables = section.find_all("table", "outcomes")
        if not tables or not tables[0].find_all("tr", "outcome"):
            problems.append(f"{name}: no table.outcomes with a tr.outcome")
        if not section.find_all("svg", "timeline") and "no timeline recorded" not in section.text():
            problems.append(f"{name}: neither an svg.timeline nor 'no timeline recorded'")
    if not incidents and "No incidents" not in root.text():
        problems.append("no incident sections, and the page does not say there are none")
    return problems, len(incidents)


def check_timelines(root, expected_lanes, events_min):
    problems = []
    lanes = events = 0
    for svg in root.find_all("svg", "timeline"):
        svg_lanes = svg.find_all("g", "lane")
        if not svg_lanes:
            problems.append("an svg.timeline without any g.lane")
        for lane in svg_lanes:
            if not lane.attrs.get("data-lane"):
                problems.append("a g.lane without data-lane")
        lanes += len(svg_lanes)
        for mark in svg.find_all(klass="event"):
            events += 1
            titles = [child for child in mark.children
                      if isinstance(child, Node) and child.tag == "title"]
            if not titles or not titles[0].text().strip():
                problems.append(f"an event mark ({' '.join(mark.classes())}) without a <title>")
    if expected_lanes is not None and lanes != expected_lanes:
        problems.append(f"{lanes} timeline lanes in all, expected {expected_lanes}")
    if events_min is not None and events < events_min:
        problems.append(f"{events} event marks, expected at least {events_min}")
    return problems, lanes, events


def check_dom(dom, args):
    root = parse(dom)
    titles = root.find_all("title")
    problems = [] if titles and titles[0].text().strip() else ["the page has no <title>"]
    problems += check_self_contained(root)
    incident_problems, incidents = check_incidents(root, args.expect_incidents)
    timeline_problems, lanes, events = check_timelines(
        root, args.expect_lanes, args.expect_events_min)
    problems += incident_problems + timeline_problems
    outcomes = len(root.find_all("tr", "outcome"))
    if problems:
        raise CheckFailed("the rendered DOM is not as expected:\n  " + "\n  ".join(problems))
    print(f"dom: {incidents} incidents, {lanes} lanes, {events} event marks, "
          f"{outcomes} outcome rows")


# ---------------------------------------------------------------------------
# The screenshot.

def check_png(path):
    if not path.is_file():
        raise CheckFailed(f"no screenshot at {path}")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise CheckFailed(f"{path} is not a PNG")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    if len(data) < MIN_SCREENSHOT_BYTES:
        raise CheckFailed(f"{path} is only {len(data)} bytes: the page looks blank")
    print(f"screenshot: {path} ({width}x{height} px, {len(data)} bytes)")


def main():
    parser = argparse.ArgumentParser(
        description="Render an nvs HTML report in headless Chromium and check it.")
    parser.add_argument("html", type=Path, help="the report page")
    parser.add_argument("outdir", type=Path, help="where the screenshot goes")
    parser.add_argument("--expect-incidents", type=int, metavar="N",
                        help="exactly N section.incident")
    parser.add_argument("--expect-lanes", type=int, metavar="N",
                        help="exactly N g.lane, over all the page's timelines")
    parser.add_argument("--expect-events-min", type=int, metavar="N",
                        help="at least N event marks, over all the page's timelines")
    args = parser.parse_args()
    try:
        if not args.html.is_file():
            raise CheckFailed(f"no page at {args.html}")
        chromium = find_chromium()
        url = args.html.resolve().as_uri()

        dom = run_chromium(chromium, ["--dump-dom", url],
                           lambda rc, out: rc == 0 and b"</html>" in out, "dump the DOM")
        check_dom(dom.decode("utf-8", errors="replace"), args)

        args.outdir.mkdir(parents=True, exist_ok=True)
        shot = (args.outdir / (args.html.stem + ".png")).resolve()
        shot.unlink(missing_ok=True)  # a stale shot must not pass for a new one
        run_chromium(chromium, [f"--screenshot={shot}", f"--window-size={SCREENSHOT_SIZE}", url],
                     lambda rc, out: rc == 0 and shot.is_file(), "take a screenshot")
        check_png(shot)
    except CheckFailed as failure:
        print(f"browser_check: FAILED: {failure}", file=sys.stderr)
        return 1
    print("browser_check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

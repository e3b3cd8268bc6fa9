#!/usr/bin/env python3
"""Generate the router conformance suite (tests/conformance/*.jsonl).

Every expected result, state and digest below is derived by hand from
variants/router/SPEC.md and protocol/PROTOCOL.md and written down as literal
data.  A small independent model of the spec (``Model`` below, written from
the spec only) re-derives every domain expectation as a cross-check of the
hand-written data: if the two disagree, generation fails and the
disagreement must be resolved by re-reading the spec.  No variant is run.

Usage:  python3 generate.py        (writes the files next to this script,
                                     deterministically, and prints their names)
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
I64_MIN = -(2 ** 63)
I64_MAX = 2 ** 63 - 1

# ---------------------------------------------------------------------------
# JSON writing
# ---------------------------------------------------------------------------


class Raw:
    """A JSON number written verbatim (e.g. ``1e0``) to test lexical rules."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "Raw(%s)" % self.text


_SHORT_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r",
              "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _file_str(s):
    """String for the scenario files: standard JSON.  Control characters,
    U+007F-U+009F and U+2028/U+2029 are written as \\u escapes so the files
    stay readable; everything else (non-ASCII, emoji) is raw UTF-8."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch in _SHORT_ESC:
            out.append(_SHORT_ESC[ch])
        elif c < 0x20 or 0x7F <= c <= 0x9F or c in (0x2028, 0x2029):
            out.append("\\u%04x" % c)
        elif 0xD800 <= c <= 0xDFFF:
            raise ValueError("lone surrogate in a Python string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jenc(v):
    """Compact JSON for scenario lines (member order as given)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return _file_str(v)
    if isinstance(v, list):
        return "[" + ",".join(jenc(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(_file_str(k) + ":" + jenc(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


# ---------------------------------------------------------------------------
# Canonical bytes (SPEC 6.1) and digest (SPEC 6.2)
# ---------------------------------------------------------------------------

STATE_KEYS = ["inputs", "outputs", "routes", "input_labels", "output_labels", "locks", "salvos"]


def _canon_str(s):
    for ch in s:
        c = ord(ch)
        assert not (c < 0x20 or c == 0x7F), "control character in canonical state"
        assert not (0xD800 <= c <= 0xDFFF)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canon(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        raise TypeError("bool in state")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _canon_str(v)
    if isinstance(v, list):
        return "[" + ",".join(_canon(x) for x in v) + "]"
    raise TypeError(type(v))


def canonical_text(st):
    """SPEC 6.1: members in the fixed order, salvo members name,routes, route
    members output,input; only \\" and \\\\ escapes; raw UTF-8 otherwise."""
    parts = []
    for k in STATE_KEYS:
        v = st[k]
        if k == "salvos":
            items = []
            for s in v:
                rs = ",".join('{"output":%s,"input":%s}' % (_canon(r["output"]), _canon(r["input"]))
                              for r in s["routes"])
                items.append('{"name":%s,"routes":[%s]}' % (_canon_str(s["name"]), rs))
            val = "[" + ",".join(items) + "]"
        else:
            val = _canon(v)
        parts.append('"%s":%s' % (k, val))
    return "{" + ",".join(parts) + "}"


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def digest(st):
    return fnv1a64(canonical_text(st).encode("utf-8"))


def canonical_value(st):
    """The state as a JSON value with members in canonical order."""
    return {
        "inputs": st["inputs"], "outputs": st["outputs"],
        "routes": list(st["routes"]),
        "input_labels": list(st["input_labels"]),
        "output_labels": list(st["output_labels"]),
        "locks": list(st["locks"]),
        "salvos": [{"name": s["name"],
                    "routes": [{"output": r["output"], "input": r["input"]} for r in s["routes"]]}
                   for s in st["salvos"]],
    }


# ---------------------------------------------------------------------------
# Hand-writing helpers
# ---------------------------------------------------------------------------


def R(*pairs):
    return [{"output": o, "input": i} for o, i in pairs]


def route(c, *pairs):
    return {"op": "route", "client": c, "routes": R(*pairs)}


def label(c, kind, *pairs):
    return {"op": "label", "client": c, "kind": kind,
            "labels": [{"index": k, "text": t} for k, t in pairs]}


def lock(c, *pairs):
    return {"op": "lock", "client": c, "locks": [{"output": o, "action": a} for o, a in pairs]}


def sdef(c, name, *pairs):
    return {"op": "salvo_define", "client": c, "name": name, "routes": R(*pairs)}


def sfire(c, name):
    return {"op": "salvo_fire", "client": c, "name": name}


def sdel(c, name):
    return {"op": "salvo_delete", "client": c, "name": name}


DUMP = {"op": "dump"}


def rch(*pairs):
    """Success of route / salvo_fire."""
    return {"ok": True, "changed": R(*pairs)}


def lch(kind, *pairs):
    return {"ok": True, "kind": kind, "changed": [{"index": k, "text": t} for k, t in pairs]}


def kch(*pairs):
    return {"ok": True, "changed": [{"output": o, "owner": w} for o, w in pairs]}


def defined(name, n):
    return {"ok": True, "name": name, "size": n}


def deleted(name):
    return {"ok": True, "name": name}


def _override(base, v):
    if v is None:
        return base
    if isinstance(v, dict):
        base = list(base)
        for k, x in v.items():
            base[k] = x
        return base
    return list(v)


def mk(I, O, routes=None, il=None, ol=None, locks=None, salvos=()):
    """A state written by hand: SPEC 2 initial values, then overrides (a full
    list, or a dict index -> value).  salvos: [(name, [(out, in), ...])] in the
    order they must appear canonically (not re-sorted here)."""
    return {
        "inputs": I, "outputs": O,
        "routes": _override([o % I for o in range(O)], routes),
        "input_labels": _override(["Input %d" % (i + 1) for i in range(I)], il),
        "output_labels": _override(["Output %d" % (o + 1) for o in range(O)], ol),
        "locks": _override([None] * O, locks),
        "salvos": [{"name": n, "routes": R(*rs)} for n, rs in salvos],
    }


def dumped(st):
    return {"ok": True, "state": canonical_value(st)}


# ---------------------------------------------------------------------------
# Independent model of the spec, used only to cross-check the literal data
# ---------------------------------------------------------------------------


class DomainError(Exception):
    pass


OPS = ["route", "label", "lock", "salvo_define", "salvo_fire", "salvo_delete", "dump"]
MEMBERS = {
    "route": {"op", "client", "routes"},
    "label": {"op", "client", "kind", "labels"},
    "lock": {"op", "client", "locks"},
    "salvo_define": {"op", "client", "name", "routes"},
    "salvo_fire": {"op", "client", "name"},
    "salvo_delete": {"op", "client", "name"},
    "dump": {"op"},
}


def has_ctrl(s):
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in s)


def nbytes(s):
    return len(s.encode("utf-8"))


def is_int(v):
    return type(v) is int and I64_MIN <= v <= I64_MAX


def is_client(v):
    return type(v) is str and 1 <= nbytes(v) <= 64 and not has_ctrl(v)


def is_name(v):
    return type(v) is str and 1 <= nbytes(v) <= 32 and not has_ctrl(v)


def is_label(v):
    return type(v) is str and nbytes(v) <= 64 and not has_ctrl(v)


def is_list(v):
    return type(v) is list and 1 <= len(v) <= 1024


def is_obj(v, keys):
    return type(v) is dict and set(v) == set(keys)


def name_key(n):
    return n.encode("utf-8")


def fail(code):
    raise DomainError(code)


def check_shape(cmd):
    op = cmd["op"]
    if set(cmd) != MEMBERS[op]:
        fail("bad_request")
    if op == "dump":
        return
    if not is_client(cmd["client"]):
        fail("bad_request")
    if op in ("route", "salvo_define"):
        if not is_list(cmd["routes"]):
            fail("bad_request")
        for e in cmd["routes"]:
            if not is_obj(e, ("output", "input")) or not is_int(e["output"]) or not is_int(e["input"]):
                fail("bad_request")
    if op in ("salvo_define", "salvo_fire", "salvo_delete"):
        if not is_name(cmd["name"]):
            fail("bad_request")
    if op == "label":
        if not (type(cmd["kind"]) is str and cmd["kind"] in ("input", "output")):
            fail("bad_request")
        if not is_list(cmd["labels"]):
            fail("bad_request")
        for e in cmd["labels"]:
            if not is_obj(e, ("index", "text")) or not is_int(e["index"]) or type(e["text"]) is not str:
                fail("bad_request")
    if op == "lock":
        if not is_list(cmd["locks"]):
            fail("bad_request")
        for e in cmd["locks"]:
            if not is_obj(e, ("output", "action")) or not is_int(e["output"]):
                fail("bad_request")
            if not (type(e["action"]) is str and e["action"] in ("O", "U", "F")):
                fail("bad_request")


class Model:
    def __init__(self, I, O):
        self.st = mk(I, O)

    def run(self, cmd, is_query):
        try:
            return self._run(cmd, is_query)
        except DomainError as e:
            return {"ok": False, "error": e.args[0]}

    def _check_routes(self, routes, client, locks):
        st = self.st
        seen = set()
        for e in routes:
            o, i = e["output"], e["input"]
            if not 0 <= o < st["outputs"]:
                fail("out_of_range")
            if not 0 <= i < st["inputs"]:
                fail("out_of_range")
            if o in seen:
                fail("duplicate")
            seen.add(o)
            if locks and st["locks"][o] is not None and st["locks"][o] != client:
                fail("locked")

    def _do_route(self, routes, client):
        self._check_routes(routes, client, True)
        changed = sorted((e["output"], e["input"]) for e in routes
                         if self.st["routes"][e["output"]] != e["input"])
        for o, i in changed:
            self.st["routes"][o] = i
        return rch(*changed)

    def _run(self, cmd, is_query):
        st = self.st
        if type(cmd) is not dict:
            fail("bad_request")
        if "op" not in cmd or type(cmd["op"]) is not str:
            fail("bad_request")
        op = cmd["op"]
        if op not in OPS:
            fail("unknown_op")
        if is_query and op != "dump":
            fail("not_a_query")
        check_shape(cmd)
        client = cmd.get("client")
        salvos = {s["name"]: s for s in st["salvos"]}
        if op == "dump":
            return dumped(st)
        if op == "route":
            return self._do_route(cmd["routes"], client)
        if op == "label":
            kind = cmd["kind"]
            n = st["inputs"] if kind == "input" else st["outputs"]
            arr = st["input_labels"] if kind == "input" else st["output_labels"]
            seen = set()
            for e in cmd["labels"]:
                k, t = e["index"], e["text"]
                if not 0 <= k < n:
                    fail("out_of_range")
                if k in seen:
                    fail("duplicate")
                seen.add(k)
                if nbytes(t) > 64:
                    fail("label_too_long")
                if has_ctrl(t):
                    fail("bad_label")
            changed = sorted((e["index"], e["text"]) for e in cmd["labels"] if arr[e["index"]] != e["text"])
            for k, t in changed:
                arr[k] = t
            return lch(kind, *changed)
        if op == "lock":
            seen = set()
            new = {}
            for e in cmd["locks"]:
                o, a = e["output"], e["action"]
                if not 0 <= o < st["outputs"]:
                    fail("out_of_range")
                if o in seen:
                    fail("duplicate")
                seen.add(o)
                cur = st["locks"][o]
                if a == "O":
                    if cur is None:
                        new[o] = client
                    elif cur != client:
                        fail("locked")
                elif a == "U":
                    if cur == client:
                        new[o] = None
                    elif cur is not None:
                        fail("locked")
                else:
                    if cur is not None:
                        new[o] = None
            for o, w in new.items():
                st["locks"][o] = w
            return kch(*sorted(new.items()))
        if op == "salvo_define":
            self._check_routes(cmd["routes"], client, False)
            name = cmd["name"]
            if name not in salvos and len(salvos) >= 64:
                fail("full")
            rs = sorted((e["output"], e["input"]) for e in cmd["routes"])
            salvos[name] = {"name": name, "routes": R(*rs)}
            st["salvos"] = sorted(salvos.values(), key=lambda s: name_key(s["name"]))
            return defined(name, len(rs))
        if op == "salvo_fire":
            if cmd["name"] not in salvos:
                fail("not_found")
            return self._do_route(salvos[cmd["name"]]["routes"], client)
        if op == "salvo_delete":
            if cmd["name"] not in salvos:
                fail("not_found")
            del salvos[cmd["name"]]
            st["salvos"] = sorted(salvos.values(), key=lambda s: name_key(s["name"]))
            return deleted(cmd["name"])
        raise AssertionError(op)


def valid_state(x):
    """SPEC 6.3."""
    if type(x) is not dict or set(x) != set(STATE_KEYS):
        return False
    I, O = x["inputs"], x["outputs"]
    if not (is_int(I) and is_int(O) and 1 <= I <= 1024 and 1 <= O <= 1024):
        return False
    if type(x["routes"]) is not list or len(x["routes"]) != O:
        return False
    if not all(is_int(r) and 0 <= r < I for r in x["routes"]):
        return False
    for k, n in (("input_labels", I), ("output_labels", O)):
        if type(x[k]) is not list or len(x[k]) != n or not all(is_label(t) for t in x[k]):
            return False
    if type(x["locks"]) is not list or len(x["locks"]) != O:
        return False
    if not all(w is None or is_client(w) for w in x["locks"]):
        return False
    sv = x["salvos"]
    if type(sv) is not list or len(sv) > 64:
        return False
    prev = None
    for s in sv:
        if not is_obj(s, ("name", "routes")) or not is_name(s["name"]) or not is_list(s["routes"]):
            return False
        if prev is not None and not name_key(prev) < name_key(s["name"]):
            return False
        prev = s["name"]
        last = -1
        for r in s["routes"]:
            if not is_obj(r, ("output", "input")) or not is_int(r["output"]) or not is_int(r["input"]):
                return False
            if not (0 <= r["output"] < O and 0 <= r["input"] < I):
                return False
            if r["output"] <= last:
                return False
            last = r["output"]
    return True


# ---------------------------------------------------------------------------
# Scenario writer
# ---------------------------------------------------------------------------


def _same(a, b):
    """JSON-value equality (bool is not int)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class Scenario:
    def __init__(self, fname, I, O, title):
        self.fname = fname
        self.lines = [{"config": {"inputs": I, "outputs": O}, "title": title}]
        self.model = Model(I, O)

    def _add(self, step, note):
        if note:
            step["note"] = note
        self.lines.append(step)

    def _cmd(self, kind, cmd, expect, note):
        got = self.model.run(cmd, kind == "query")
        if isinstance(expect, str):
            want = {"ok": False, "error": expect}
            step = {kind: cmd, "expect_error": expect}
        else:
            want = expect
            step = {kind: cmd, "expect": expect}
        if not _same(got, want):
            raise SystemExit("%s step %d: hand-written %s disagrees with model %s\n  %s: %s"
                             % (self.fname, len(self.lines), jenc(want), jenc(got), kind, jenc(cmd)[:300]))
        self._add(step, note)

    def apply(self, cmd, expect, note=None):
        """expect: full result object, or an error code string."""
        self._cmd("apply", cmd, expect, note)

    def query(self, cmd, expect, note=None):
        self._cmd("query", cmd, expect, note)

    def state(self, st, note=None):
        """expect_state followed by expect_digest."""
        want = canonical_text(st)
        got = canonical_text(self.model.st)
        if want != got:
            raise SystemExit("%s step %d: hand-written state differs from model\n want %s\n got  %s"
                             % (self.fname, len(self.lines), want[:2000], got[:2000]))
        self._add({"expect_state": canonical_value(st)}, note)
        self._add({"expect_digest": digest(st)}, None)

    def digest_only(self, st, note=None):
        assert canonical_text(st) == canonical_text(self.model.st)
        self._add({"expect_digest": digest(st)}, note)

    def restore(self, value, note=None):
        """A valid state: restore succeeds with the digest of its canonical form."""
        if not valid_state(value):
            raise SystemExit("%s step %d: restore value expected valid but model rejects it"
                             % (self.fname, len(self.lines)))
        st = canonical_value(value)
        self.model.st = canonical_value(value)
        self._add({"restore": value, "expect_digest": digest(st)}, note)

    def restore_bad(self, value, note):
        if valid_state(value):
            raise SystemExit("%s step %d: restore value expected invalid but model accepts it: %s"
                             % (self.fname, len(self.lines), note))
        self._add({"restore": value, "expect_protocol_error": "bad_state"}, note)

    def send(self, msg, code, note=None):
        self._add({"send": msg, "expect_protocol_error": code}, note)

    def send_text(self, text, code, note=None):
        assert "\n" not in text and "\r" not in text
        self._add({"send_text": text, "expect_protocol_error": code}, note)

    def send_hex(self, data, code, note=None):
        self._add({"send_hex": data.hex(), "expect_protocol_error": code}, note)

    def send_hex_reply(self, data, reply, note=None):
        """Raw bytes that are a valid message: the reply must be `reply`."""
        self._add({"send_hex": data.hex(), "expect_reply": reply}, note)

    def send_parts(self, parts, note=None):
        """A multi-part message: the variant must not answer it (the runner
        then sends a ping, whose pong must be the next reply)."""
        self._add({"send_parts": parts, "expect_ignored": True}, note)

    def write(self):
        path = os.path.join(HERE, self.fname)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for line in self.lines:
                f.write(jenc(line) + "\n")
        return path, len(self.lines) - 1


SCENARIOS = []


def scenario(fname, I, O, title):
    s = Scenario(fname, I, O, title)
    SCENARIOS.append(s)
    return s


# ---------------------------------------------------------------------------
# Scenario files
# ---------------------------------------------------------------------------


def gen_initial():
    s = scenario("initial_state.jsonl", 3, 2,
                 "fresh 3x2 router: initial canonical state (SPEC 2), digest, dump as query and as apply")
    st = {"inputs": 3, "outputs": 2, "routes": [0, 1],
          "input_labels": ["Input 1", "Input 2", "Input 3"],
          "output_labels": ["Output 1", "Output 2"],
          "locks": [None, None], "salvos": []}
    s.state(st, "initial state: route of output o is o mod I, labels 'Input n'/'Output n' 1-based, no locks, no salvos")
    s.query(DUMP, dumped(st))
    s.apply(DUMP, dumped(st), "dump sent as apply behaves as in a query (SPEC 3.4)")
    s.digest_only(st, "dump changed nothing")

    s = scenario("initial_wrap.jsonl", 2, 5,
                 "fresh 2x5 router: initial routes wrap (output o shows input o mod I)")
    st = {"inputs": 2, "outputs": 5, "routes": [0, 1, 0, 1, 0],
          "input_labels": ["Input 1", "Input 2"],
          "output_labels": ["Output 1", "Output 2", "Output 3", "Output 4", "Output 5"],
          "locks": [None] * 5, "salvos": []}
    s.state(st)
    s.query(DUMP, dumped(st))
    s.apply(route("a", (4, 0), (3, 1), (2, 0)), rch(),
            "every listed output already shows that input: success with an empty changed list")
    s.apply(route("a", (4, 1)), rch((4, 1)))
    s.apply(route("a", (0, 2)), "out_of_range", "input index I=2 is out of range")
    s.apply(route("a", (5, 0)), "out_of_range", "output index O=5 is out of range")
    s.state(mk(2, 5, routes={4: 1}))

    s = scenario("initial_min.jsonl", 1, 1, "smallest router 1x1 (SPEC 6.2 example state)")
    st = {"inputs": 1, "outputs": 1, "routes": [0], "input_labels": ["Input 1"],
          "output_labels": ["Output 1"], "locks": [None], "salvos": []}
    assert canonical_text(st) == ('{"inputs":1,"outputs":1,"routes":[0],"input_labels":["Input 1"],'
                                  '"output_labels":["Output 1"],"locks":[null],"salvos":[]}')
    s.state(st, "canonical text is exactly the one printed in SPEC 6.2")
    s.apply(route("a", (0, 0)), rch())
    s.apply(route("a", (0, 1)), "out_of_range")
    s.apply(route("a", (1, 0)), "out_of_range")
    s.apply(label("a", "input", (1, "x")), "out_of_range")
    s.apply(label("a", "output", (1, "x")), "out_of_range")
    s.apply(lock("a", (1, "O")), "out_of_range")
    s.apply(lock("a", (0, "O")), kch((0, "a")))
    s.apply(sdef("a", "s", (0, 0)), defined("s", 1))
    s.apply(sfire("b", "s"), "locked", "the salvo route would not change output 0, but it is locked by a: still locked")
    s.apply(sfire("a", "s"), rch())
    s.state(mk(1, 1, locks=["a"], salvos=[("s", [(0, 0)])]))

    s = scenario("initial_tall.jsonl", 1, 1024, "fresh 1x1024 router: all outputs show input 0")
    st = mk(1, 1024)
    assert st["routes"] == [0] * 1024 and st["output_labels"][1023] == "Output 1024"
    s.state(st)
    s.apply(route("a", (1023, 0)), rch())
    s.apply(route("a", (1023, 1)), "out_of_range")
    s.apply(route("a", (1024, 0)), "out_of_range")
    s.apply(label("a", "output", (1023, "last")), lch("output", (1023, "last")))
    s.state(mk(1, 1024, ol={1023: "last"}))


def gen_route():
    s = scenario("route.jsonl", 4, 4, "route: changes, ranges, ordering of changed, duplicates, all-or-nothing, shape")
    s.state(mk(4, 4))
    s.apply(route("a", (1, 3), (2, 2)), rch((1, 3)), "SPEC 7 example: output 2 already shows input 2")
    s.apply(route("a", (4, 0)), "out_of_range", "output == O")
    s.apply(route("a", (-1, 0)), "out_of_range", "negative output")
    s.apply(route("a", (0, 4)), "out_of_range", "input == I")
    s.apply(route("a", (0, -1)), "out_of_range", "negative input")
    s.apply(route("a", (3, 0)), rch((3, 0)), "output O-1 is valid")
    s.apply(route("a", (0, 3)), rch((0, 3)), "input I-1 is valid")
    s.apply(route("a", (0, 3)), rch(), "re-routing to the input already shown: changed is []")
    s.state(mk(4, 4, routes=[3, 3, 2, 0]))
    s.apply(route("a", (3, 1), (0, 2), (2, 0)), rch((0, 2), (2, 0), (3, 1)),
            "changed is sorted by output even though the command lists 3,0,2")
    s.apply(route("b", (2, 0), (1, 1), (0, 2)), rch((1, 1)),
            "only real changes are listed (outputs 0 and 2 already show those inputs)")
    s.state(mk(4, 4, routes=[2, 1, 0, 1]))
    s.apply(route("a", (3, 3), (1, 2), (3, 0)), "duplicate")
    s.apply(route("a", (0, 1), (0, 1)), "duplicate", "identical entries are still a duplicate")
    s.apply(route("a", (0, 0), (1, 0), (2, 1), (0, 3)), "duplicate", "non-adjacent duplicate")
    s.apply(route("a", (0, 2), (0, 2)), "duplicate", "duplicate even when neither entry would change anything")
    s.apply(route("a", (0, 3), (1, 2), (4, 0)), "out_of_range", "all-or-nothing: the valid entries before it are not applied")
    s.apply(route("a", (0, 3), (1, 2), (2, -1)), "out_of_range")
    s.apply(route("a", (0, 3), (1, 2), (0, 0)), "duplicate")
    s.state(mk(4, 4, routes=[2, 1, 0, 1]), "nothing changed by the failed commands")
    s.apply(route("a", (0, 0), (1, 0), (2, 0), (3, 0)), rch((0, 0), (1, 0), (3, 0)))
    s.state(mk(4, 4, routes=[0, 0, 0, 0]))

    base = {"op": "route", "client": "a", "routes": R((1, 1))}
    s.apply({"op": "route", "client": "a", "routes": []}, "bad_request", "empty list (SPEC 7)")
    for v, why in (({}, "object"), ("0", "string"), (None, "null"), (R((1, 1))[0], "a single entry not wrapped in a list"),
                   ([R((1, 1))], "list of lists")):
        s.apply({"op": "route", "client": "a", "routes": v}, "bad_request", "routes is not a list of entries: " + why)
    s.apply({"op": "route"}, "bad_request", "SPEC 7: members missing")
    s.apply({"op": "route", "client": "a"}, "bad_request", "routes missing")
    s.apply({"op": "route", "routes": R((1, 1))}, "bad_request", "client missing")
    s.apply(dict(base, seq=1), "bad_request", "extra member")
    s.apply(dict(base, note="x"), "bad_request", "extra member")
    s.apply(dict(base, name="x"), "bad_request", "extra member that another op uses")
    s.apply({"op": "route", "client": "a", "routes": [{"output": 1}]}, "bad_request", "entry without input")
    s.apply({"op": "route", "client": "a", "routes": [{"input": 1}]}, "bad_request", "entry without output")
    s.apply({"op": "route", "client": "a", "routes": [{"output": 1, "input": 1, "client": "a"}]}, "bad_request",
            "entry with an extra member")
    s.apply({"op": "route", "client": "a", "routes": [{}]}, "bad_request", "empty entry")
    s.apply({"op": "route", "client": "a", "routes": [[1, 1]]}, "bad_request", "entry is an array")
    s.apply({"op": "route", "client": "a", "routes": [None]}, "bad_request", "entry is null")
    s.apply({"op": "route", "client": "a", "routes": R((1, 1)) + [5]}, "bad_request", "second entry is a number")
    s.apply({"op": "route", "client": "a", "routes": [{"Output": 1, "input": 1}]}, "bad_request", "member names are case-sensitive")

    s.apply(route("a", *[(1, 1)] * 1024), "duplicate", "1024 entries pass the shape check; the second entry is a duplicate")
    s.apply(route("a", *[(1, 1)] * 1025), "bad_request", "1025 entries: list too long (shape pass comes before duplicates)")
    s.apply(route("a", *([(9, 9)] + [(1, 1)] * 1024)), "bad_request",
            "1025 entries, the first out of range: shape pass first, so bad_request")
    s.apply(route("a", *([(3, 3), (2, 2), (1, 1), (0, 3)] + [(0, 0)] * 1020)), "duplicate",
            "1024 entries, the 5th is the first duplicate")
    s.state(mk(4, 4, routes=[0, 0, 0, 0]), "nothing changed")
    s.apply(route("a", (3, 0), (2, 1), (1, 2), (0, 3)), rch((0, 3), (1, 2), (2, 1)),
            "listed in descending output order; output 3 already shows input 0")
    s.state(mk(4, 4, routes=[3, 2, 1, 0]))


def gen_label():
    s = scenario("label.jsonl", 3, 2,
                 "label: kinds, ranges per kind, byte lengths with multibyte UTF-8, control characters, shape")
    s.state(mk(3, 2))
    s.apply(label("a", "output", (0, "PGM")), lch("output", (0, "PGM")), "SPEC 7 example")
    s.apply(label("a", "input", (2, "CAM 3"), (0, "CAM 1")), lch("input", (0, "CAM 1"), (2, "CAM 3")),
            "changed sorted by index")
    s.apply(label("b", "input", (1, "CAM 2"), (0, "CAM 1")), lch("input", (1, "CAM 2")),
            "index 0 already has that text: not listed")
    s.apply(label("a", "input", (1, "CAM 2")), lch("input"), "no change: changed is []")
    s.apply(label("a", "input", (3, "x")), "out_of_range", "input index I=3")
    s.apply(label("a", "output", (2, "x")), "out_of_range", "output index O=2 (valid for inputs, not for outputs)")
    s.apply(label("a", "input", (-1, "x")), "out_of_range")
    s.apply(label("a", "output", (-1, "x")), "out_of_range")
    s.apply(label("a", "output", (1, "")), lch("output", (1, "")), "the empty string is a valid label")
    s.apply(label("a", "output", (1, "")), lch("output"))
    s.state(mk(3, 2, il=["CAM 1", "CAM 2", "CAM 3"], ol=["PGM", ""]))

    s.apply(label("a", "input", (0, "x" * 64)), lch("input", (0, "x" * 64)), "64 bytes: allowed")
    s.apply(label("a", "input", (0, "y" * 65)), "label_too_long", "65 bytes")
    s.apply(label("a", "output", (0, "\u00e9" * 32)), lch("output", (0, "\u00e9" * 32)),
            "32 x U+00E9 = 32 characters, 64 bytes: allowed")
    s.apply(label("a", "output", (0, "\u00e9" * 32 + "x")), "label_too_long", "33 characters but 65 bytes")
    s.apply(label("a", "output", (0, "\u00e9" * 40)), "label_too_long", "40 characters, 80 bytes")
    s.apply(label("a", "input", (1, "\U0001F600" * 16)), lch("input", (1, "\U0001F600" * 16)),
            "16 emoji = 16 code points, 32 UTF-16 units, 64 bytes: allowed")
    s.apply(label("a", "input", (1, "\U0001F600" * 16 + "x")), "label_too_long", "17 code points, 65 bytes")
    s.apply(label("a", "input", (1, "\U0001F600" * 17)), "label_too_long", "34 UTF-16 units, 68 bytes")
    s.apply(label("a", "input", (2, "\u20ac" * 21 + "x")), lch("input", (2, "\u20ac" * 21 + "x")),
            "21 x U+20AC (3 bytes) + 1 = 64 bytes: allowed")
    s.apply(label("a", "input", (2, "\u20ac" * 22)), "label_too_long", "22 characters, 66 bytes")
    for t, why in (("\u0000", "NUL"), ("a\nb", "LF (SPEC 7)"), ("\t", "TAB"), ("x\r", "CR"),
                   ("\u001f", "U+001F"), ("\u007f", "DEL U+007F"), ("ok\u007fok", "DEL inside"),
                   ("\u0001abc", "U+0001")):
        s.apply(label("a", "input", (0, t)), "bad_label", "control character: " + why)
    s.apply(label("a", "input", (0, 'a "quoted" \\ back/slash'), (1, "\u0080\u0085\u009f\u00a0"),
                  (2, "\u2028 \uff06 \U0001F3A5 \uffff")),
            lch("input", (0, 'a "quoted" \\ back/slash'), (1, "\u0080\u0085\u009f\u00a0"),
                (2, "\u2028 \uff06 \U0001F3A5 \uffff")),
            "allowed: quotes, backslash, slash, U+0080..U+009F (not control characters per SPEC), U+2028, emoji, U+FFFF")
    st = mk(3, 2, il=['a "quoted" \\ back/slash', "\u0080\u0085\u009f\u00a0", "\u2028 \uff06 \U0001F3A5 \uffff"],
            ol=["\u00e9" * 32, ""])
    s.state(st, "canonical bytes: only \\\" and \\\\ escaped, everything else raw UTF-8 (no \\u, no \\/)")

    for v, why in ((5, "number"), (None, "null"), (["a"], "array"), ({"t": "a"}, "object"), (True, "true")):
        s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": v}]},
                "bad_request", "text is not a string: " + why)
    for v in ("Input", "", "inputs", "both", None, 0, ["input"], True):
        s.apply({"op": "label", "client": "a", "kind": v, "labels": [{"index": 0, "text": "k"}]},
                "bad_request", "bad kind")
    s.apply({"op": "label", "client": "a", "labels": [{"index": 0, "text": "k"}]}, "bad_request", "kind missing")
    s.apply({"op": "label", "client": "a", "kind": "input"}, "bad_request", "labels missing")
    s.apply({"op": "label", "kind": "input", "labels": [{"index": 0, "text": "k"}]}, "bad_request", "client missing")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": "k"}], "extra": 0},
            "bad_request", "extra member")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": []}, "bad_request", "empty list")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": {"index": 0, "text": "k"}}, "bad_request",
            "labels not a list")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0}]}, "bad_request", "entry without text")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"text": "k"}]}, "bad_request", "entry without index")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": "k", "kind": "input"}]},
            "bad_request", "entry with extra member")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"output": 0, "text": "k"}]}, "bad_request",
            "entry uses output instead of index")
    s.apply(label("a", "input", (0, "k"), (0, "k")), "duplicate", "duplicate index even with the same text")
    s.apply(label("a", "input", (0, "a"), (1, "b"), (0, "c")), "duplicate")
    s.apply(label("a", "input", *[(0, "k")] * 1024), "duplicate", "1024 entries: shape ok, then duplicate")
    s.apply(label("a", "input", *[(0, "k")] * 1025), "bad_request", "1025 entries")
    s.apply(label("a", "input", (0, "new"), (1, "z" * 65)), "label_too_long", "all-or-nothing")
    s.apply(label("a", "input", (0, "new"), (1, "a\nb")), "bad_label", "all-or-nothing")
    s.apply(label("a", "input", (0, "new"), (3, "z")), "out_of_range", "all-or-nothing")
    s.state(st, "unchanged")

    s.apply(lock("b", (0, "O")), kch((0, "b")))
    s.apply(label("a", "output", (0, "PGM 2")), lch("output", (0, "PGM 2")),
            "locks do not protect labels: a labels output 0 locked by b")
    st = mk(3, 2, il=st["input_labels"], ol=["PGM 2", ""], locks=["b", None])
    s.state(st)


def gen_lock():
    s = scenario("lock.jsonl", 2, 4, "lock: the full O/U/F x unlocked/own/other table, changed lists, interplay with route")
    s.state(mk(2, 4))
    s.apply(lock("a", (0, "O")), kch((0, "a")), "O on unlocked: becomes owned by the client")
    s.apply(lock("a", (0, "O")), kch(), "O on own: unchanged, ok")
    s.apply(lock("b", (0, "O")), "locked", "O on another's: locked")
    s.apply(lock("b", (1, "U")), kch(), "U on unlocked: unchanged, ok")
    s.apply(lock("b", (0, "U")), "locked", "U on another's: locked")
    s.state(mk(2, 4, locks=["a", None, None, None]))
    s.apply(lock("a", (0, "U")), kch((0, None)), "U on own: becomes unlocked (owner null)")
    s.apply(lock("a", (0, "F")), kch(), "F on unlocked: unchanged, ok")
    s.apply(lock("a", (0, "O")), kch((0, "a")))
    s.apply(lock("a", (0, "F")), kch((0, None)), "F on own: becomes unlocked")
    s.apply(lock("a", (0, "O")), kch((0, "a")))
    s.apply(lock("b", (0, "F")), kch((0, None)), "F on another's: becomes unlocked")
    s.state(mk(2, 4))

    s.apply(lock("a", (3, "O"), (1, "O")), kch((1, "a"), (3, "a")), "changed sorted by output")
    s.apply(lock("b", (2, "O"), (0, "O"), (1, "F")), kch((0, "b"), (1, None), (2, "b")))
    s.state(mk(2, 4, locks=["b", None, "b", "a"]))
    s.apply(lock("a", (3, "O"), (1, "U"), (2, "F"), (0, "F")), kch((0, None), (2, None)),
            "3: O on own (no change), 1: U on unlocked (no change), 2 and 0: F on b's")
    s.state(mk(2, 4, locks=[None, None, None, "a"]))

    s.apply(lock("a", (4, "O")), "out_of_range")
    s.apply(lock("a", (-1, "F")), "out_of_range")
    s.apply(lock("a", (I64_MAX, "U")), "out_of_range")
    s.apply(lock("a", (0, "O"), (0, "U")), "duplicate")
    s.apply(lock("a", (1, "F"), (2, "O"), (1, "F")), "duplicate")
    s.apply(lock("b", (0, "O"), (3, "U")), "locked", "all-or-nothing: 0 is not locked by b afterwards")
    s.apply(lock("b", (0, "O"), (3, "O")), "locked")
    s.state(mk(2, 4, locks=[None, None, None, "a"]), "unchanged")

    for v in ("o", "u", "f", "X", "", "OU", " O", "Lock", None, 1, True, ["O"]):
        s.apply({"op": "lock", "client": "a", "locks": [{"output": 0, "action": v}]}, "bad_request", "bad action")
    s.apply({"op": "lock", "client": "a", "locks": [{"output": 0}]}, "bad_request", "action missing")
    s.apply({"op": "lock", "client": "a", "locks": [{"action": "O"}]}, "bad_request", "output missing")
    s.apply({"op": "lock", "client": "a", "locks": [{"output": 0, "action": "O", "owner": "a"}]}, "bad_request",
            "entry with extra member")
    s.apply({"op": "lock", "client": "a", "locks": []}, "bad_request", "empty list")
    s.apply({"op": "lock", "client": "a", "locks": {"output": 0, "action": "O"}}, "bad_request", "not a list")
    s.apply({"op": "lock", "client": "a"}, "bad_request", "locks missing")
    s.apply({"op": "lock", "locks": [{"output": 0, "action": "O"}]}, "bad_request", "client missing")
    s.apply({"op": "lock", "client": "a", "locks": [{"output": 0, "action": "O"}], "routes": []}, "bad_request",
            "extra member")
    s.apply(lock("a", *[(0, "F")] * 1024), "duplicate", "1024 entries")
    s.apply(lock("a", *[(0, "F")] * 1025), "bad_request", "1025 entries")

    s.apply(lock("A", (3, "U")), "locked", "client ids are case-sensitive: A is not a")
    s.apply(lock("A", (3, "F")), kch((3, None)))
    s.apply(lock("a", (0, "O")), kch((0, "a")))
    s.apply(route("b", (0, 1)), "locked", "route of an output locked by another client")
    s.apply(route("b", (0, 0)), "locked", "locked even though the route would not change")
    s.apply(route("a", (0, 1)), rch((0, 1)), "the owner may route it")
    s.apply(route("b", (1, 0), (0, 0)), "locked", "all-or-nothing: output 1 is not changed")
    s.apply(route("b", (1, 0)), rch((1, 0)))
    s.apply(route("a", (0, 1)), rch())
    s.state(mk(2, 4, routes=[1, 0, 0, 1], locks=["a", None, None, None]))

    s.apply(lock("\U0001F600 \u00fcn\u00efcode", (1, "O")), kch((1, "\U0001F600 \u00fcn\u00efcode")))
    s.apply(lock('a"b\\c', (2, "O")), kch((2, 'a"b\\c')))
    s.apply(lock("\u00e9" * 32, (3, "O")), kch((3, "\u00e9" * 32)), "a 64-byte client id")
    s.apply(lock("a", (1, "F"), (2, "U")), "locked", "entry 1: U on another's lock")
    st = mk(2, 4, routes=[1, 0, 0, 1], locks=["a", "\U0001F600 \u00fcn\u00efcode", 'a"b\\c', "\u00e9" * 32])
    s.state(st, "client ids appear verbatim in the canonical state (quote and backslash escaped)")
    s.apply(lock("z", (3, "F"), (2, "F"), (1, "F"), (0, "F")), kch((0, None), (1, None), (2, None), (3, None)))
    s.state(mk(2, 4, routes=[1, 0, 0, 1]))


def gen_salvo():
    s = scenario("salvo.jsonl", 4, 4, "salvos: define, redefine, fire (with locks), delete, not_found, names, canonical sorting")
    s.apply(sdef("a", "news", (2, 0), (0, 1)), defined("news", 2))
    s.state(mk(4, 4, salvos=[("news", [(0, 1), (2, 0)])]),
            "defining changes no route; stored routes sorted by output")
    s.apply(sfire("a", "news"), rch((0, 1), (2, 0)))
    s.apply(sfire("b", "news"), rch(), "nothing changes the second time")
    s.apply(sdef("a", "news", (1, 0)), defined("news", 1), "redefine replaces")
    s.apply(sdef("b", "all", (3, 3), (2, 2), (1, 1), (0, 0)), defined("all", 4),
            "size counts all routes, even those that equal the current routes")
    s.state(mk(4, 4, routes=[1, 1, 0, 3], salvos=[("all", [(0, 0), (1, 1), (2, 2), (3, 3)]), ("news", [(1, 0)])]))
    s.apply(sfire("a", "all"), rch((0, 0), (2, 2)), "only real changes")
    s.apply(lock("b", (3, "O")), kch((3, "b")))
    s.apply(sdef("a", "cam", (3, 0)), defined("cam", 1), "define does not check locks")
    s.apply(sfire("a", "cam"), "locked")
    s.apply(sfire("a", "all"), "locked", "output 3 locked by b although its route would not change")
    s.state(mk(4, 4, locks={3: "b"}, salvos=[("all", [(0, 0), (1, 1), (2, 2), (3, 3)]), ("cam", [(3, 0)]),
                                             ("news", [(1, 0)])]), "failed fires changed nothing")
    s.apply(sfire("b", "cam"), rch((3, 0)), "the lock owner may fire it")
    s.apply(sfire("a", "news"), rch((1, 0)))
    s.apply(sfire("a", "nope"), "not_found")
    s.apply(sdel("a", "nope"), "not_found")
    s.apply(sfire("a", "NEWS"), "not_found", "names are case-sensitive")
    s.apply(sfire("a", "news "), "not_found")
    s.apply(sdel("b", "cam"), deleted("cam"), "any client may delete")
    s.apply(sfire("b", "cam"), "not_found")
    s.apply(sdel("b", "cam"), "not_found")
    st = mk(4, 4, routes=[0, 0, 2, 0], locks={3: "b"},
            salvos=[("all", [(0, 0), (1, 1), (2, 2), (3, 3)]), ("news", [(1, 0)])])
    s.state(st)

    s.apply(sdef("a", "bad", (4, 0)), "out_of_range")
    s.apply(sdef("a", "bad", (0, 4)), "out_of_range")
    s.apply(sdef("a", "bad", (-1, 0)), "out_of_range")
    s.apply(sdef("a", "bad", (0, -1)), "out_of_range")
    s.apply(sdef("a", "bad", (0, 1), (0, 2)), "duplicate")
    s.apply(sdef("a", "bad", (0, 1), (5, 0)), "out_of_range", "no salvo 'bad' is stored")
    s.apply(sdef("a", "news", (0, 1), (1, 1), (0, 1)), "duplicate", "a failed redefine keeps the old salvo")
    s.apply(sdef("a", "bad", *[(0, 0)] * 1024), "duplicate")
    s.apply(sdef("a", "bad", *[(0, 0)] * 1025), "bad_request")
    s.apply({"op": "salvo_define", "client": "a", "name": "bad", "routes": []}, "bad_request")
    s.apply({"op": "salvo_define", "client": "a", "name": "bad"}, "bad_request", "routes missing")
    s.apply({"op": "salvo_define", "client": "a", "routes": R((0, 0))}, "bad_request", "name missing")
    s.apply({"op": "salvo_define", "name": "bad", "routes": R((0, 0))}, "bad_request", "client missing")
    s.apply(dict(sdef("a", "bad", (0, 0)), size=1), "bad_request", "extra member")
    s.apply({"op": "salvo_define", "client": "a", "name": "bad", "routes": [{"output": 0, "input": 0, "x": 0}]},
            "bad_request", "route entry with extra member")
    s.apply({"op": "salvo_define", "client": "a", "name": "bad", "routes": [{"output": 0.0, "input": 0}]},
            "bad_request", "float output")
    s.apply(sdef("", "bad", (0, 0)), "bad_request", "bad client id")
    s.state(st, "unchanged")

    for n, why in (("", "empty"), ("x" * 33, "33 bytes"), ("\u00e9" * 16 + "x", "17 characters, 33 bytes"),
                   ("a\nb", "LF"), ("\u007f", "DEL"), ("\u0000", "NUL"), ("tab\there", "TAB"), (5, "number"),
                   (None, "null"), (["news"], "array")):
        s.apply({"op": "salvo_define", "client": "a", "name": n, "routes": R((0, 0))}, "bad_request", "bad name: " + why)
    s.apply({"op": "salvo_fire", "client": "a", "name": ""}, "bad_request", "shape before not_found")
    s.apply({"op": "salvo_fire", "client": "a", "name": "x" * 33}, "bad_request", "shape before not_found")
    s.apply({"op": "salvo_fire", "client": "a", "name": 5}, "bad_request")
    s.apply({"op": "salvo_fire", "client": "a", "name": "news", "routes": R((0, 0))}, "bad_request", "extra member")
    s.apply({"op": "salvo_fire", "name": "news"}, "bad_request", "client missing")
    s.apply({"op": "salvo_fire", "client": "a"}, "bad_request", "name missing")
    s.apply({"op": "salvo_delete", "client": "a", "name": "a\u0000"}, "bad_request")
    s.apply({"op": "salvo_delete", "client": "a", "name": "x" * 33}, "bad_request", "shape before not_found")
    s.apply({"op": "salvo_delete", "client": "a"}, "bad_request", "name missing")
    s.apply({"op": "salvo_delete", "client": "", "name": "news"}, "bad_request", "bad client id")
    s.apply({"op": "salvo_delete", "client": "a", "name": "news", "x": 1}, "bad_request", "extra member")
    s.state(st, "unchanged")

    s.apply(sdef("a", "x" * 32, (0, 3)), defined("x" * 32, 1), "32-byte name")
    s.apply(sdef("a", "\u00e9" * 16, (1, 3)), defined("\u00e9" * 16, 1), "16 characters, 32 bytes")
    names = ["b", "\U0001F600", "ab", "B", "\uff5e", "a ", "_", "a", "\u00e9"]
    for n in names:
        s.apply(sdef("a", n, (0, 0)), defined(n, 1))
    z = [(0, 0)]
    order = [("B", z), ("_", z), ("a", z), ("a ", z), ("ab", z), ("all", [(0, 0), (1, 1), (2, 2), (3, 3)]), ("b", z),
             ("news", [(1, 0)]), ("x" * 32, [(0, 3)]), ("\u00e9", z), ("\u00e9" * 16, [(1, 3)]), ("\uff5e", z),
             ("\U0001F600", z)]
    st = mk(4, 4, routes=[0, 0, 2, 0], locks={3: "b"}, salvos=order)
    s.state(st, "names sorted by UTF-8 bytes: B(42) _(5f) a(61) 'a '(61 20) ab all b news x.. e-acute(c3 a9) "
                "e-acute x16 (prefix first) U+FF5E(ef bd 9e) U+1F600(f0 ..); UTF-16 order would put the emoji "
                "before U+FF5E")
    s.apply(sdel("a", "a"), deleted("a"))
    s.apply(sdel("a", "\uff5e"), deleted("\uff5e"))
    s.apply(sfire("a", "\u00e9" * 16), rch((1, 3)))
    order = [x for x in order if x[0] not in ("a", "\uff5e")]
    st = mk(4, 4, routes=[0, 3, 2, 0], locks={3: "b"}, salvos=order)
    s.state(st)

    s.apply(lock("a", (2, "O")), kch((2, "a")))
    s.apply(sdef("b", "two", (2, 1)), defined("two", 1))
    s.apply(sfire("b", "two"), "locked", "b may not fire over a's lock")
    s.apply(sfire("a", "two"), rch((2, 1)))
    order.insert(order.index(("news", [(1, 0)])) + 1, ("two", [(2, 1)]))
    s.state(mk(4, 4, routes=[0, 3, 1, 0], locks={2: "a", 3: "b"}, salvos=order))


def gen_salvo_full():
    s = scenario("salvo_full.jsonl", 2, 2, "the 64-salvo limit: full, redefining when full, range/duplicate checks before full")
    for n in range(64):
        s.apply(sdef("a", str(n), (0, n % 2)), defined(str(n), 1))
    # byte-wise order of the decimal names 0..63, written out by hand:
    names = ["0"]
    for d in range(1, 10):
        names.append(str(d))
        names += [str(d) + str(k) for k in range(10) if d * 10 + k < 64]
    assert len(names) == 64 and names[:4] == ["0", "1", "10", "11"] and names[-4:] == ["63", "7", "8", "9"]
    sal = [(n, [(0, int(n) % 2)]) for n in names]
    s.state(mk(2, 2, salvos=sal), "64 salvos; names sorted byte-wise ('10' before '2')")
    s.apply(sdef("a", "64", (0, 0)), "full")
    s.apply(sdef("a", "64", (2, 0)), "out_of_range", "route checks come before the 64-salvo limit")
    s.apply(sdef("a", "64", (0, 2)), "out_of_range")
    s.apply(sdef("a", "64", (0, 0), (0, 1)), "duplicate", "duplicate comes before the limit")
    s.apply({"op": "salvo_define", "client": "a", "name": "64", "routes": []}, "bad_request")
    s.apply(sdef("a", "", (0, 0)), "bad_request")
    s.apply(sdef("b", "0", (1, 0)), defined("0", 1), "redefining an existing name is never full")
    s.apply(sfire("a", "0"), rch((1, 0)))
    s.apply(sdel("a", "10"), deleted("10"))
    s.apply(sdef("a", "64", (0, 1), (1, 1)), defined("64", 2), "63 salvos: a new name fits again")
    s.apply(sdef("a", "65", (0, 0)), "full")
    sal = [(n, [(1, 0)] if n == "0" else [(0, int(n) % 2)]) for n in names if n != "10"]
    sal.insert(names.index("63"), ("64", [(0, 1), (1, 1)]))
    assert [n for n, _ in sal][55:62] == ["6", "60", "61", "62", "63", "64", "7"]
    s.state(mk(2, 2, routes=[0, 0], salvos=sal))
    s.apply(sdel("a", "64"), deleted("64"))
    s.apply(sdel("a", "64"), "not_found")
    s.apply(sdef("a", "\U0001F600", (1, 1)), defined("\U0001F600", 1))
    s.apply(sdef("a", "\u00e9", (1, 1)), "full")
    s.apply(sfire("c", "\U0001F600"), rch((1, 1)))


def gen_dump_query():
    s = scenario("dump_query.jsonl", 3, 2, "dump as query and apply; queries refuse mutating ops; op checks come first")
    st = mk(3, 2)
    s.query(DUMP, dumped(st))
    s.apply(DUMP, dumped(st))
    s.query(route("a", (0, 2)), "not_a_query", "a valid route as a query")
    s.query({"op": "route"}, "not_a_query", "not_a_query comes before the shape pass")
    s.query({"op": "route", "client": "", "routes": [], "junk": 1}, "not_a_query")
    s.query(label("a", "input", (0, "x")), "not_a_query")
    s.query({"op": "label", "kind": "nothing"}, "not_a_query")
    s.query(lock("a", (0, "O")), "not_a_query")
    s.query({"op": "lock", "client": 5}, "not_a_query")
    s.query(sdef("a", "s", (0, 0)), "not_a_query")
    s.query(sfire("a", "nonexistent"), "not_a_query", "not not_found")
    s.query({"op": "salvo_fire"}, "not_a_query")
    s.query({"op": "salvo_delete"}, "not_a_query")
    s.query(sdel("a", "nonexistent"), "not_a_query")
    s.state(st, "queries changed nothing")
    s.query({"op": "explode"}, "unknown_op")
    s.query({"op": "explode", "client": "a"}, "unknown_op")
    s.query({"op": "Dump"}, "unknown_op", "ops are case-sensitive")
    s.query({"op": "dump "}, "unknown_op")
    s.query({"op": ""}, "unknown_op")
    s.query({"op": "snapshot"}, "unknown_op", "protocol message types are not ops")
    s.query({}, "bad_request", "op missing")
    s.query({"client": "a"}, "bad_request", "op missing")
    for v in (5, None, True, ["dump"], {"op": "dump"}):
        s.query({"op": v}, "bad_request", "op not a string")
    for v in ([1, 2], [], "dump", None, 5, True):
        s.query(v, "bad_request", "query is not an object")
    s.query({"op": "dump", "client": "a"}, "bad_request", "dump carries no client")
    s.query({"op": "dump", "x": None}, "bad_request", "extra member")
    s.apply({"op": "dump", "client": "a"}, "bad_request")
    s.apply({"op": "explode"}, "unknown_op", "SPEC 7")
    s.apply({"op": "route"}, "bad_request", "SPEC 7")
    s.apply([1, 2], "bad_request", "SPEC 7")
    s.apply({"op": "Route", "client": "a", "routes": R((0, 0))}, "unknown_op")
    s.apply(route("a", (0, 2)), rch((0, 2)))
    st = mk(3, 2, routes=[2, 1])
    s.query(DUMP, dumped(st))
    s.apply(DUMP, dumped(st))
    s.query(route("a", (1, 0)), "not_a_query")
    s.query(DUMP, dumped(st), "the refused query changed nothing")
    s.apply(sdef("a", "q", (1, 2)), defined("q", 1))
    s.apply(lock("p", (1, "O")), kch((1, "p")))
    s.apply(label("a", "output", (1, "PVW")), lch("output", (1, "PVW")))
    st = mk(3, 2, routes=[2, 1], ol={1: "PVW"}, locks={1: "p"}, salvos=[("q", [(1, 2)])])
    s.query(DUMP, dumped(st))
    s.apply(DUMP, dumped(st))
    s.state(st)


def gen_validation_order():
    s = scenario("validation_order.jsonl", 4, 4, "SPEC 4: which error wins when several are present")
    s.apply(lock("b", (0, "O")), kch((0, "b")))
    st = mk(4, 4, locks={0: "b"})
    s.apply(route("a", (0, 1), (9, 0)), "locked", "entries in array order: entry 0 (locked) before entry 1 (out_of_range)")
    s.apply(route("a", (9, 0), (0, 1)), "out_of_range", "entry 0 out_of_range before entry 1 locked")
    s.apply(route("a", (0, 9)), "out_of_range", "input out of range on a locked output: range checks come first")
    s.apply(route("a", (1, 1), (1, 9)), "out_of_range", "input range is checked before duplicate within an entry")
    s.apply(route("a", (1, 1), (9, 1)), "out_of_range")
    s.apply(route("a", (1, 1), (1, 2), (0, 1)), "duplicate", "duplicate at entry 1 before locked at entry 2")
    s.apply(route("a", (0, 1), (1, 1), (1, 2)), "locked", "locked at entry 0 before duplicate at entry 2")
    s.apply(route("a", (0, 1), (0, 1)), "locked", "the first occurrence already fails as locked")
    s.apply(route("a", (2, 2), (0, 2), (0, 3)), "locked")
    s.apply({"op": "route", "client": "a", "routes": R((9, 0)) + [{"output": 1, "input": "2"}]}, "bad_request",
            "shape pass over the whole command before any semantic check")
    s.apply({"op": "route", "client": "a", "routes": R((0, 1)) + [{"output": 1, "input": 1, "x": 0}]}, "bad_request",
            "shape before locked")
    s.apply(route("", (9, 9)), "bad_request", "bad client id and out_of_range: shape first")
    s.apply(route("a\n", (0, 1)), "bad_request", "bad client id and locked: shape first")
    s.apply({"op": "route", "client": "a", "routes": R((0, 1), (0, 1)), "x": 1}, "bad_request",
            "extra member and duplicate: shape first")
    s.apply({"op": "explode", "routes": []}, "unknown_op", "op check before shape")
    s.apply({"op": 5, "routes": []}, "bad_request")
    s.apply({"routes": R((0, 0)), "client": "a"}, "bad_request", "op missing")

    s.apply(label("a", "input", (9, "x" * 65)), "out_of_range", "index range before text length")
    s.apply(label("a", "input", (0, "a"), (0, "x" * 65)), "duplicate", "duplicate before text length")
    s.apply(label("a", "input", (0, "a"), (0, "\n")), "duplicate", "duplicate before bad_label")
    s.apply(label("a", "input", (0, "x" * 64 + "\n")), "label_too_long", "65 bytes with a control char: length first")
    s.apply(label("a", "input", (0, "\n" * 65)), "label_too_long")
    s.apply(label("a", "input", (0, "a\n"), (1, "x" * 65)), "bad_label", "entry 0 bad_label before entry 1 too long")
    s.apply(label("a", "input", (0, "x" * 65), (1, "a\n")), "label_too_long")
    s.apply(label("a", "input", (0, "x" * 65), (9, "a")), "label_too_long", "entry 0 before entry 1's out_of_range")
    s.apply(label("a", "input", (0, "\u007f"), (9, "a")), "bad_label")
    s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"index": 9, "text": "x" * 70},
                                                                       {"index": 1, "text": 5}]},
            "bad_request", "shape (text not a string) before out_of_range")
    s.apply({"op": "label", "client": "a", "kind": "Input", "labels": [{"index": 9, "text": "\n"}]},
            "bad_request", "bad kind before semantic errors")

    s.apply(lock("a", (0, "O"), (9, "O")), "locked", "entry 0 locked before entry 1 out_of_range")
    s.apply(lock("a", (9, "O"), (0, "O")), "out_of_range")
    s.apply(lock("a", (1, "O"), (1, "U")), "duplicate")
    s.apply(lock("a", (0, "U"), (0, "F")), "locked", "entry 0 fails (U on b's) before the duplicate")
    s.apply(lock("a", (1, "O"), (1, "F"), (0, "U")), "duplicate", "duplicate at entry 1 before locked at entry 2")
    s.apply(lock("a", (1, "O"), (0, "U"), (1, "F")), "locked")
    s.apply({"op": "lock", "client": "a", "locks": [{"output": 0, "action": "U"}, {"output": 1, "action": "X"}]},
            "bad_request", "bad action (shape) before locked")

    s.apply(sdef("a", "s", (0, 1)), defined("s", 1), "define ignores locks")
    s.apply(sdef("a", "t", (1, 1), (1, 9)), "out_of_range", "input range before duplicate")
    s.apply(sdef("a", "t", (9, 1), (9, 1)), "out_of_range")
    s.apply(sdef("a", "t", (1, 1), (2, 2), (1, 9)), "out_of_range")
    s.apply(sdef("a", "t", (1, 1), (2, 2), (1, 1), (9, 9)), "duplicate")
    s.apply(sfire("a", "zzz"), "not_found")
    s.apply(sfire("a", "s"), "locked")
    s.apply({"op": "salvo_fire", "client": "a", "name": "z" * 33}, "bad_request", "bad name shape before not_found")
    s.apply({"op": "salvo_fire", "client": "", "name": "zzz"}, "bad_request", "bad client before not_found")
    s.apply(sdel("", "zzz"), "bad_request")
    s.query({"op": "route", "client": 5}, "not_a_query", "in a query: op check (not_a_query) before shape")
    s.apply({"op": "route", "client": 5}, "bad_request", "the same command as apply")
    st = mk(4, 4, locks={0: "b"}, salvos=[("s", [(0, 1)])])
    s.state(st, "no failed command changed anything")


def gen_types():
    s = scenario("types.jsonl", 4, 4, "integer lexical rules, 64-bit range, client ids, op/cmd types")
    bad_ints = [
        (1.0, "1.0 has a fraction"), (Raw("1e0"), "exponent"), (Raw("1E0"), "exponent"), (Raw("1e+0"), "exponent"),
        (Raw("10e-1"), "exponent"), (Raw("1.0e0"), "fraction and exponent"), (0.5, "fraction"),
        (-1.0, "negative with fraction"), (Raw("0.0"), "0.0"), (Raw("-0.0"), "-0.0"), (Raw("0e0"), "0e0"),
        ("1", "string"), ("", "empty string"), (True, "true"), (False, "false"), (None, "null"), ([1], "array"),
        ({"v": 1}, "object"),
        (9223372036854775808, "2^63: outside the signed 64-bit range"),
        (-9223372036854775809, "-2^63-1: outside the signed 64-bit range"),
        (18446744073709551615, "2^64-1"), (18446744073709551616, "2^64"),
        (10 ** 30, "10^30"), (-10 ** 30, "-10^30"),
    ]
    oor_ints = [(I64_MAX, "2^63-1 is an integer, but not a valid index"),
                (I64_MIN, "-2^63 is an integer, but not a valid index"),
                (4, "== size"), (-1, "negative"), (1000000, "large")]
    for v, why in bad_ints:
        s.apply({"op": "route", "client": "a", "routes": [{"output": v, "input": 0}]}, "bad_request", "output " + why)
    for v, why in oor_ints:
        s.apply({"op": "route", "client": "a", "routes": [{"output": v, "input": 0}]}, "out_of_range", "output " + why)
    for v, why in bad_ints:
        s.apply({"op": "route", "client": "a", "routes": [{"output": 0, "input": v}]}, "bad_request", "input " + why)
    for v, why in oor_ints:
        s.apply({"op": "route", "client": "a", "routes": [{"output": 0, "input": v}]}, "out_of_range", "input " + why)
    s.apply(route("a", (3, 0)), rch((3, 0)), "control: a valid route")
    for v in (1.0, Raw("0e0"), "0", True, 9223372036854775808):
        s.apply({"op": "label", "client": "a", "kind": "input", "labels": [{"index": v, "text": "t"}]}, "bad_request",
                "label index not an integer")
    for v in (I64_MAX, I64_MIN):
        s.apply({"op": "label", "client": "a", "kind": "output", "labels": [{"index": v, "text": "t"}]},
                "out_of_range")
    for v in (Raw("1e0"), 2.0, False, -9223372036854775809):
        s.apply({"op": "lock", "client": "a", "locks": [{"output": v, "action": "O"}]}, "bad_request")
    for v in (I64_MAX, I64_MIN):
        s.apply({"op": "lock", "client": "a", "locks": [{"output": v, "action": "O"}]}, "out_of_range")
    s.apply({"op": "salvo_define", "client": "a", "name": "s", "routes": [{"output": 1.0, "input": 0}]}, "bad_request")
    s.apply({"op": "salvo_define", "client": "a", "name": "s", "routes": [{"output": 1, "input": Raw("0E0")}]},
            "bad_request")
    s.apply({"op": "salvo_define", "client": "a", "name": "s", "routes": [{"output": 1, "input": I64_MAX}]},
            "out_of_range")
    s.apply({"op": "salvo_define", "client": "a", "name": "s", "routes": [{"output": I64_MIN, "input": 0}]},
            "out_of_range")
    s.state(mk(4, 4, routes={3: 0}))

    good_clients = [("x" * 64, "64 bytes"), ("\u00e9" * 32, "32 characters, 64 bytes"),
                    ("\U0001F600" * 16, "16 emoji, 64 bytes"), ("\u20ac" * 21 + "x", "64 bytes"),
                    ("\u0080", "U+0080 is not a control character"), ("\u009f", "U+009F"), (" ", "a space"),
                    ("a b", "space inside"), ('"\\', "quote and backslash"), ("1", "digits")]
    bad_clients = [("", "empty"), ("x" * 65, "65 bytes"), ("\u00e9" * 32 + "x", "65 bytes, 33 characters"),
                   ("\U0001F600" * 16 + "x", "65 bytes"), ("\u20ac" * 22, "66 bytes"), ("\u0000", "NUL"),
                   ("a\nb", "LF"), ("\u001f", "U+001F"), ("\u007f", "DEL"), ("\t", "TAB"), ("ok\r", "CR"),
                   (5, "number"), (None, "null"), (True, "true"), (["a"], "array"), ({"id": "a"}, "object")]
    for c, why in good_clients:
        s.apply(route(c, (3, 0)), rch(), "valid client id: " + why)
    for c, why in bad_clients:
        s.apply(route(c, (3, 1)), "bad_request", "bad client id: " + why)
        s.apply(lock(c, (3, "O")), "bad_request", "bad client id: " + why)
    s.apply(lock("\u0080", (1, "O")), kch((1, "\u0080")))
    s.apply(lock("\U0001F600" * 16, (2, "O")), kch((2, "\U0001F600" * 16)))
    s.apply(lock('"\\', (3, "O")), kch((3, '"\\')))
    s.state(mk(4, 4, routes={3: 0}, locks=[None, "\u0080", "\U0001F600" * 16, '"\\']))

    for v in (5, None, True, [], {}, ["route"]):
        s.apply({"op": v, "client": "a", "routes": R((0, 0))}, "bad_request", "op is not a string")
    s.apply({"op": "ROUTE", "client": "a", "routes": R((0, 0))}, "unknown_op")
    s.apply({"op": "route\u0000", "client": "a", "routes": R((0, 0))}, "unknown_op")
    s.apply({"op": "", "client": "a"}, "unknown_op")
    for v, why in (([1, 2], "array"), ([], "empty array"), ("route", "string"), (5, "number"), (None, "null"),
                   (True, "true"), (1.5, "float")):
        s.apply(v, "bad_request", "cmd is not an object: " + why)
    s.state(mk(4, 4, routes={3: 0}, locks=[None, "\u0080", "\U0001F600" * 16, '"\\']), "unchanged")


def v1_state():
    return {
        "inputs": 3, "outputs": 5, "routes": [2, 0, 1, 2, 0],
        "input_labels": ['Cam "A"', "Back\\slash", "\u00e9\U0001F600"],
        "output_labels": ["PGM", "PVW", "AUX 1", "", "Ausgang \u00fc"],
        "locks": [None, "panel-1", None, "\U0001F600", None],
        "salvos": [{"name": "a", "routes": [{"output": 0, "input": 1}, {"output": 4, "input": 2}]},
                   {"name": "b", "routes": [{"output": 1, "input": 0}]}],
    }


def gen_restore():
    s = scenario("restore.jsonl", 2, 2, "restore: valid states replace everything including the size; every invalid rule of SPEC 6.3")
    V = v1_state()
    s.restore(V, "a 3x5 state into a variant started as 2x2")
    s.state(V)
    s.apply(route("a", (4, 1)), rch((4, 1)), "output 4 exists after the restore")
    s.apply(route("a", (5, 0)), "out_of_range")
    s.apply(route("a", (0, 3)), "out_of_range", "inputs is 3 now")
    s.apply(route("a", (1, 2)), "locked", "restored lock of panel-1")
    s.apply(sfire("a", "a"), rch((0, 1), (4, 2)), "restored salvo")
    s.apply(sfire("a", "b"), "locked")
    s.apply(sfire("panel-1", "b"), rch(), "output 1 already shows input 0")
    V2 = mk(3, 5, routes=[1, 0, 1, 2, 2], il=V["input_labels"], ol=V["output_labels"], locks=V["locks"],
            salvos=[("a", [(0, 1), (4, 2)]), ("b", [(1, 0)])])
    s.state(V2)

    def w(**kw):
        x = v1_state()
        x.update(kw)
        return x

    def without(k):
        x = v1_state()
        del x[k]
        return x

    def salv(*ss):
        return w(salvos=list(ss))

    def sv(name, *pairs):
        return {"name": name, "routes": R(*pairs)}

    bad = []
    for v, why in ((None, "null"), ([], "array"), ([v1_state()], "array holding a state"), ("state", "string"),
                   (0, "number"), (True, "true"), ({}, "empty object")):
        bad.append((v, "state is not a valid object: " + why))
    for k in STATE_KEYS:
        bad.append((without(k), "member %s missing" % k))
    bad.append((w(extra=0), "extra member"))
    bad.append((w(version=1), "extra member"))
    bad.append((w(Inputs=3), "extra member differing only in case"))
    for v, why in ((0, "0"), (-1, "-1"), ("3", "string"), (3.0, "3.0 not an integer"), (Raw("3e0"), "3e0 not an integer"),
                   (True, "true"), (None, "null"), (9223372036854775808, "2^63")):
        bad.append((w(inputs=v), "inputs " + why))
    bad.append((w(inputs=1025, input_labels=["i"] * 1025), "inputs 1025 (arrays consistent)"))
    bad.append((w(inputs=0, input_labels=[]), "inputs 0 (labels consistent)"))
    bad.append((w(outputs=1025, routes=[0] * 1025, output_labels=["o"] * 1025, locks=[None] * 1025),
                "outputs 1025 (arrays consistent)"))
    bad.append((w(outputs=0, routes=[], output_labels=[], locks=[], salvos=[]), "outputs 0 (arrays consistent)"))
    bad.append((w(outputs=5.0), "outputs 5.0"))
    bad.append((w(outputs="5"), "outputs string"))
    for v, why in (([2, 0, 1, 2], "4 routes for 5 outputs"), ([2, 0, 1, 2, 0, 0], "6 routes for 5 outputs"),
                   ([2, 0, 1, 2, 3], "route == inputs"), ([2, 0, 1, 2, -1], "negative route"),
                   ([2, 0, 1, 2, 0.0], "route 0.0"), ([2, 0, 1, 2, "0"], "route string"),
                   ([2, 0, 1, 2, None], "route null"), ({"0": 2}, "routes an object"), (None, "routes null")):
        bad.append((w(routes=v), why))
    L = v1_state()["input_labels"]
    for v, why in ((L[:2], "2 input labels for 3 inputs"), (L + ["x"], "4 input labels"),
                   (L[:2] + [5], "label number"), (L[:2] + [None], "label null"),
                   (L[:2] + ["x" * 65], "label 65 bytes"), (L[:2] + ["\u00e9" * 33], "label 33 characters, 66 bytes"),
                   (L[:2] + ["a\nb"], "label with LF"), (L[:2] + ["\u007f"], "label with DEL"),
                   (L[:2] + ["\u0000"], "label with NUL"), ("abc", "input_labels a string")):
        bad.append((w(input_labels=v), why))
    OL = v1_state()["output_labels"]
    for v, why in ((OL[:4], "4 output labels"), (OL + [""], "6 output labels"), (OL[:4] + ["\u001f"], "U+001F"),
                   (OL[:4] + ["\U0001F600" * 17], "68 bytes")):
        bad.append((w(output_labels=v), "output_labels: " + why))
    for v, why in (([None] * 4, "4 locks"), ([None] * 6, "6 locks"), ([None] * 4 + [""], "empty client id"),
                   ([None] * 4 + ["x" * 65], "65-byte client id"), ([None] * 4 + ["a\u0000"], "client id with NUL"),
                   ([None] * 4 + ["a\n"], "client id with LF"), ([None] * 4 + [5], "number"),
                   ([None] * 4 + [False], "false"), ([None] * 4 + [{"owner": "a"}], "object"),
                   (None, "locks null")):
        bad.append((w(locks=v), "locks: " + why))
    bad.append((w(salvos=None), "salvos null"))
    bad.append((w(salvos={}), "salvos an object"))
    bad.append((w(salvos="a"), "salvos a string"))
    bad.append((w(salvos=[sv("s%02d" % n, (0, 0)) for n in range(65)]), "65 salvos"))
    bad.append((salv(5), "salvo not an object"))
    bad.append((salv({"name": "a"}), "salvo without routes"))
    bad.append((salv({"routes": R((0, 0))}), "salvo without name"))
    bad.append((salv({"name": "a", "routes": R((0, 0)), "size": 1}), "salvo with extra member"))
    for n, why in (("", "empty"), ("x" * 33, "33 bytes"), ("a\n", "LF"), ("\u007f", "DEL"), (5, "number"),
                   (None, "null")):
        bad.append((salv({"name": n, "routes": R((0, 0))}), "salvo name " + why))
    bad.append((salv({"name": "a", "routes": []}), "salvo with no routes"))
    bad.append((salv({"name": "a", "routes": {"output": 0, "input": 0}}), "salvo routes not a list"))
    bad.append((salv(sv("a", (5, 0))), "salvo route output == outputs"))
    bad.append((salv(sv("a", (0, 3))), "salvo route input == inputs"))
    bad.append((salv(sv("a", (-1, 0))), "salvo route negative output"))
    bad.append((salv(sv("a", (0, -1))), "salvo route negative input"))
    bad.append((salv({"name": "a", "routes": [{"output": 1.0, "input": 0}]}), "salvo route output 1.0"))
    bad.append((salv({"name": "a", "routes": [{"output": 0, "input": 0, "x": 1}]}), "salvo route extra member"))
    bad.append((salv({"name": "a", "routes": [{"output": 0}]}), "salvo route without input"))
    bad.append((salv({"name": "a", "routes": [[0, 0]]}), "salvo route not an object"))
    bad.append((salv(sv("a", (0, 1), (0, 1))), "duplicate outputs in a salvo"))
    bad.append((salv(sv("a", (0, 1), (0, 2))), "duplicate outputs in a salvo"))
    bad.append((salv(sv("a", (4, 2), (0, 1))), "salvo routes not sorted by output"))
    bad.append((salv(sv("a", (0, 0)), sv("a", (1, 0))), "duplicate salvo names"))
    bad.append((salv(sv("b", (0, 0)), sv("a", (1, 0))), "salvo names not sorted"))
    bad.append((salv(sv("ab", (0, 0)), sv("a", (1, 0))), "a proper prefix must sort first"))
    bad.append((salv(sv("a", (0, 0)), sv("B", (1, 0))), "byte order: 'B' (0x42) sorts before 'a' (0x61)"))
    bad.append((salv(sv("\U0001F600", (0, 0)), sv("\uff5e", (1, 0))),
                "UTF-16 order, not UTF-8 byte order: U+FF5E (ef bd 9e) must come before U+1F600 (f0 9f 98 80)"))
    bad.append((salv(sv("\u00e9", (0, 0)), sv("z", (1, 0))), "U+00E9 (c3 a9) sorts after 'z' (7a)"))

    for i, (v, why) in enumerate(bad):
        s.restore_bad(v, why)
        if i % 10 == 9:
            s.digest_only(V2, "state unchanged after refused restores")
    s.state(V2, "state unchanged after all refused restores")

    order_v = {"salvos": [{"routes": [{"input": 2, "output": 4}], "name": "z"}],
               "locks": [None] * 5, "output_labels": V["output_labels"], "input_labels": V["input_labels"],
               "routes": [0, 0, 0, 0, 0], "outputs": 5, "inputs": 3}
    s.restore(order_v, "member order inside the received objects does not matter")
    s.state(mk(3, 5, routes=[0, 0, 0, 0, 0], il=V["input_labels"], ol=V["output_labels"], salvos=[("z", [(4, 2)])]))
    utf = w(salvos=[sv("B", (0, 0)), sv("a", (1, 0)), sv("ab", (2, 0)), sv("z", (3, 0)), sv("\u00e9", (4, 0)),
                    sv("\uff5e", (0, 1)), sv("\U0001F600", (0, 2), (1, 2), (2, 2), (3, 2), (4, 2))],
            input_labels=["\u00e9" * 32, "", "\u0080 \u2028"], locks=["\u00e9" * 32, None, None, None, "x" * 64])
    s.restore(utf, "salvo names in UTF-8 byte order, 64-byte labels and client ids")
    s.state(utf)
    s.apply(sfire("x" * 64, "\U0001F600"), "locked", "output 0 locked by another client")
    s.apply(lock("x" * 64, (0, "F")), kch((0, None)))
    s.apply(sfire("x" * 64, "\U0001F600"), rch((1, 2), (2, 2), (4, 2)), "routes were [2,0,1,2,0]: outputs 0 and 3 already show 2")
    full = w(salvos=[sv("s%02d" % n, (n % 5, n % 3)) for n in range(64)])
    s.restore(full, "exactly 64 salvos")
    s.apply(sdef("a", "new", (0, 0)), "full", "the restored 64 salvos count towards the limit")
    s.apply(sdef("a", "s63", (0, 0)), defined("s63", 1))
    s.restore(mk(1024, 1), "1024 inputs, 1 output")
    s.apply(route("a", (0, 1023)), rch((0, 1023)))
    s.restore_bad(w(inputs=1025, input_labels=["i"] * 1025), "1025 inputs")
    s.digest_only(mk(1024, 1, routes=[1023]))
    one = mk(1, 1)
    s.restore(one)
    s.state(one)
    s.restore(mk(2, 2), "back to the command-line size's initial state")
    s.state(mk(2, 2))


def gen_protocol():
    s = scenario("protocol_errors.jsonl", 3, 2, "PROTOCOL 3: protocol-level errors; the variant keeps running and its state is unchanged")
    s.apply(route("a", (0, 2)), rch((0, 2)))
    st = mk(3, 2, routes=[2, 1])
    s.send({"type": "frobnicate", "seq": 3}, "unknown_type", "PROTOCOL 8 example")
    s.send({"type": "frobnicate"}, "unknown_type", "type known is checked before required members (seq)")
    s.send({"type": "frobnicate", "seq": -1}, "unknown_type")
    s.send({"type": "Ping", "seq": 1}, "unknown_type", "types are case-sensitive")
    s.send({"type": "", "seq": 1}, "unknown_type")
    for t in ("hello", "applied", "answer", "pong", "restored", "state", "error"):
        s.send({"type": t, "seq": 1}, "unknown_type", "%s is not a request type of PROTOCOL 2.2" % t)
    s.send({"type": "ping"}, "malformed", "seq missing")
    s.send({"type": "ping", "seq": -1}, "malformed", "negative seq")
    s.send({"type": "ping", "seq": 1.5}, "malformed", "fractional seq")
    s.send({"type": "ping", "seq": 9223372036854775808}, "malformed", "seq = 2^63")
    s.send({"type": "ping", "seq": "1"}, "malformed", "seq a string")
    s.send({"type": "ping", "seq": None}, "malformed", "seq null")
    s.send({"type": "ping", "seq": True}, "malformed", "seq true")
    s.send({"seq": 1}, "malformed", "type missing")
    s.send({"type": 5, "seq": 1}, "malformed", "type not a string")
    s.send({"type": None, "seq": 1}, "malformed", "type null")
    s.send({"type": ["ping"], "seq": 1}, "malformed", "type an array")
    s.send({"type": "digest"}, "malformed")
    s.send({"type": "snapshot", "seq": -5}, "malformed")
    s.send({"type": "apply", "seq": 1, "cmd": {"op": "dump"}}, "malformed", "time_ns missing")
    s.send({"type": "apply", "seq": 1, "time_ns": -1, "cmd": {"op": "dump"}}, "malformed", "time_ns negative")
    s.send({"type": "apply", "seq": 1, "time_ns": "0", "cmd": {"op": "dump"}}, "malformed", "time_ns a string")
    s.send({"type": "apply", "seq": 1, "time_ns": 9223372036854775808, "cmd": {"op": "dump"}}, "malformed",
           "time_ns = 2^63")
    s.send({"type": "apply", "seq": 1, "time_ns": 0}, "malformed", "cmd missing")
    s.send({"type": "apply", "time_ns": 0, "cmd": route("a", (1, 2))}, "malformed",
           "seq missing: the command must not be applied")
    s.send({"type": "query", "seq": 1}, "malformed", "query missing")
    s.send({"type": "restore", "seq": 1}, "malformed", "state missing")
    s.send({"type": "restore", "state": mk(3, 2)}, "malformed", "seq missing: the (valid) state must not be restored")
    s.state(st, "nothing was applied or restored by the refused messages")
    for t, why in (("hello", "not JSON"), ("[1,2]", "JSON array"), ("[]", "empty array"), ("null", "null"),
                   ("42", "number"), ('"ping"', "string"), ("true", "true"), ("{", "truncated"),
                   ('{"type":"ping","seq":1', "unterminated object"), ("{'type':'ping','seq':1}", "single quotes"),
                   ('{"type":"ping","seq":1,}', "trailing comma"), ('{"type":"ping","seq":1} x', "trailing garbage"),
                   ('{"type":"ping","seq":1}{"type":"ping","seq":2}', "two objects"),
                   ('{"type":"ping","seq":01}', "leading zero"), ('{"type":"ping","seq":NaN}', "NaN"),
                   ('{"type":"ping","seq":1,"x":Infinity}', "Infinity"),
                   ('{"type":"ping","seq":1,"x":"\\x41"}', "invalid escape \\x"),
                   ('{"type":"ping","seq":1,"x":"a\tb"}', "raw TAB inside a string (must be escaped in JSON)"),
                   ('{type:"ping",seq:1}', "unquoted member names"),
                   ('{"type":"ping","seq":1,"x":"\\ud800"}', "unpaired high surrogate escape"),
                   ('{"type":"ping","seq":1,"x":"\\udc00"}', "unpaired low surrogate escape"),
                   ('{"type":"ping","seq":1,"x":"\\udc00\\ud800"}', "surrogates in the wrong order"),
                   ('{"type":"ping","seq":1,"x":"\\ud800A"}', "high surrogate followed by a normal character"),
                   ('{"type":"apply","seq":7,"time_ns":0,"cmd":{"op":"route","client":"a","routes":[{"output":01,"input":0}]}}',
                    "leading zero inside cmd: invalid JSON, so a protocol error, not a domain bad_request"),
                   ('{"type":"apply","seq":7,"time_ns":0,"cmd":{"op":"label","client":"a","kind":"input",'
                    '"labels":[{"index":0,"text":"\\ud800"}]}}', "unpaired surrogate inside a label")):
        s.send_text(t, "malformed", why)
    ping = b'{"type":"ping","seq":1,"x":"'
    for bad, why in ((b"\xff", "byte FF"), (b"\xc0\xaf", "overlong encoding of /"),
                     (b"\xed\xa0\x80", "UTF-8-encoded surrogate U+D800"), (b"\xf4\x90\x80\x80", "above U+10FFFF"),
                     (b"\xc3", "truncated 2-byte sequence"), (b"\x80", "lone continuation byte"),
                     (b"\xe2\x82", "truncated 3-byte sequence"), (b"\xf8\x88\x80\x80\x80", "5-byte form")):
        s.send_hex(ping + bad + b'"}', "malformed", "invalid UTF-8: " + why)
    s.send_hex(b'{"type":"apply","seq":8,"time_ns":0,"cmd":{"op":"label","client":"a","kind":"input",'
               b'"labels":[{"index":0,"text":"\xe9"}]}}', "malformed", "Latin-1 byte E9 inside a label")
    s.send_hex(b"\xff\xfe", "malformed", "not UTF-8 at all")
    # PROTOCOL 2: a message is exactly one JSON text, whitespace around it allowed.
    ping = b'{"type":"ping","seq":41}'
    s.send_hex(b"\xef\xbb\xbf" + ping, "malformed", "a UTF-8 byte-order mark in front of the object")
    s.send_hex(ping + b"\x00", "malformed", "a NUL byte after the object")
    s.send_hex(b"\x00" + ping, "malformed", "a NUL byte in front of the object")
    s.send_hex(ping + b"\x00\x00\x00\x00", "malformed", "NUL padding after the object")
    s.send_hex_reply(b" \t" + ping + b" \t ", {"type": "pong", "seq": 41},
                     "JSON whitespace (space, tab) around the object is allowed")
    # PROTOCOL 7: nesting. The message object is level 1; 64 levels are taken
    # (the domain then refuses a label list of lists), 65 are malformed.
    def deep_label(levels_in_labels):
        return ('{"type":"apply","seq":%d,"time_ns":0,"cmd":{"op":"label","client":"a","kind":"input","labels":'
                % (50 + levels_in_labels)) + "[" * levels_in_labels + "]" * levels_in_labels + "}}"
    s.send_hex_reply(deep_label(62).encode(), {"type": "applied", "seq": 112, "result": {"ok": False, "error": "bad_request"}},
                     "64 levels: the apply (1), its cmd (2), 62 nested arrays: taken as any message (the domain refuses it)")
    s.send_hex(deep_label(63).encode(), "malformed", "65 levels: one more than PROTOCOL 7 allows")
    s.send_hex(b'{"type":"ping","seq":42,"x":' + b"[" * 64 + b"]" * 64 + b"}", "malformed",
               "65 levels in a member the variant does not read")
    # PROTOCOL 1.1: a multi-part message is ignored (no reply); through
    # nvs-stdio-bridge it never reaches the variant (PROTOCOL 1.2).
    s.send_parts(['{"type":"ping","seq":43}', '{"type":"ping","seq":44}'], "two parts, each a valid ping: no reply")
    s.send_parts(['{"type":"ping","seq":45}', ''], "a valid ping and an empty part: no reply")
    s.state(st, "the variant kept running; state unchanged")
    s.apply(route("a", (1, 0)), rch((1, 0)), "still processing commands")
    s.state(mk(3, 2, routes=[2, 0]))


def gen_big():
    s = scenario("big_router.jsonl", 1024, 1024, "1024x1024: corners, 1024-entry commands, 1025-entry lists")
    s.state(mk(1024, 1024), "initial: routes 0..1023, labels up to 'Input 1024'/'Output 1024'")
    s.apply(route("a", (1023, 1023)), rch(), "initial route of output 1023 is input 1023")
    s.apply(route("a", (1023, 0)), rch((1023, 0)))
    s.apply(route("a", (1024, 0)), "out_of_range")
    s.apply(route("a", (0, 1024)), "out_of_range")
    s.apply(route("a", (0, 1023)), rch((0, 1023)))
    rev = [(o, 1023 - o) for o in range(1023, -1, -1)]
    s.apply(route("b", *rev), rch(*[(o, 1023 - o) for o in range(1, 1023)]),
            "1024 entries listed by descending output; outputs 0 and 1023 already show 1023 and 0, so 1022 changes sorted ascending")
    s.apply(route("b", *(rev + [(0, 0)])), "bad_request", "1025 entries")
    routes = [1023 - o for o in range(1024)]
    s.state(mk(1024, 1024, routes=routes))
    s.apply(label("a", "output", (1023, "last")), lch("output", (1023, "last")))
    s.apply(label("a", "input", (1024, "x")), "out_of_range")
    s.apply(label("a", "output", *[(k, "o%d" % k) for k in range(1024)]),
            lch("output", *[(k, "o%d" % k) for k in range(1024)]), "1024 labels")
    s.apply(label("a", "output", *[(k, "o%d" % k) for k in range(1023, -1, -1)]), lch("output"), "no change")
    s.apply(label("a", "input", *[(k, "i") for k in range(1025)]), "bad_request", "1025 entries")
    s.apply(lock("p", *[(o, "O") for o in range(1024)]), kch(*[(o, "p") for o in range(1024)]), "1024 locks")
    s.apply(route("q", (512, 0)), "locked")
    s.apply(lock("q", *[(o, "F") for o in range(1024)]), kch(*[(o, None) for o in range(1024)]), "1024 force unlocks")
    s.apply(lock("q", *[(o, "U") for o in range(1025)]), "bad_request", "1025 entries (and out of range): shape first")
    s.apply(lock("q", (1023, "O")), kch((1023, "q")))
    s.apply(sdef("a", "all", *[(o, o) for o in range(1023, -1, -1)]), defined("all", 1024))
    s.apply(sdef("a", "all2", *[(o, o) for o in range(1025)]), "bad_request")
    s.apply(sfire("a", "all"), "locked", "output 1023 locked by q")
    s.apply(sfire("q", "all"), rch(*[(o, o) for o in range(1024)]),
            "every output shows 1023-o, never o (1023 is odd): all 1024 change; q owns the locked output 1023")
    ol = ["o%d" % k for k in range(1024)]
    s.state(mk(1024, 1024, ol=ol, locks={1023: "q"}, salvos=[("all", [(o, o) for o in range(1024)])]))


def gen_digest_vectors():
    vecs = []
    one = {"inputs": 1, "outputs": 1, "routes": [0], "input_labels": ["Input 1"], "output_labels": ["Output 1"],
           "locks": [None], "salvos": []}
    vecs.append(one)
    ex = {"inputs": 2, "outputs": 2, "routes": [1, 1], "input_labels": ["Input 1", 'Cam "B"'],
          "output_labels": ["Output 1", "Ausgang 2 \u00fc"], "locks": [None, "panel-1"],
          "salvos": [{"name": "a", "routes": [{"output": 0, "input": 1}]}]}
    assert canonical_text(ex) == ('{"inputs":2,"outputs":2,"routes":[1,1],"input_labels":["Input 1","Cam \\"B\\""],'
                                  '"output_labels":["Output 1","Ausgang 2 \u00fc"],"locks":[null,"panel-1"],'
                                  '"salvos":[{"name":"a","routes":[{"output":0,"input":1}]}]}'), "SPEC 6.1 example"
    vecs.append(ex)
    esc = {"inputs": 2, "outputs": 3, "routes": [1, 0, 1],
           "input_labels": ['say "hi"', "C:\\path\\to\\"],
           "output_labels": ["\u00fc \u00e9 \u00f1 \u00df", "\U0001F600\U0001F3A5", "a/b \u0080 \u2028 \\\"end\""],
           "locks": [None, 'ops "1"', "\U0001F600"],
           "salvos": [{"name": "\\", "routes": [{"output": 0, "input": 0}]},
                      {"name": "\u00e9\"", "routes": [{"output": 1, "input": 1}, {"output": 2, "input": 0}]}]}
    vecs.append(esc)
    vecs.append(mk(16, 16))
    vecs.append(mk(4, 4, routes=[3, 3, 0, 1], salvos=[("B", [(0, 0)]), ("a", [(1, 1)]), ("a ", [(2, 2)]),
                                                       ("ab", [(3, 3)]), ("\uff5e", [(0, 1), (3, 0)]),
                                                       ("\U0001F600", [(1, 2)])]))
    vecs.append(mk(1024, 1024))
    path = os.path.join(HERE, "digest-vectors.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for v in vecs:
            assert valid_state(v)
            f.write(jenc({"state": canonical_value(v), "canonical": canonical_text(v), "digest": digest(v)}) + "\n")
    return path, len(vecs)


# ---------------------------------------------------------------------------
# Self-checks and main
# ---------------------------------------------------------------------------

ACTIONS = {"apply", "query", "expect_state", "expect_digest", "restore", "send", "send_text", "send_hex", "send_parts"}
EXPECTS = {"expect", "expect_error", "expect_protocol_error", "expect_digest", "expect_reply", "expect_ignored"}


def check_line_format(fname, n, obj):
    keys = set(obj) - {"note"}
    acts = keys & {"apply", "query", "restore", "send", "send_text", "send_hex", "send_parts"}
    if acts:
        assert len(acts) == 1, (fname, n, keys)
        a = acts.pop()
        rest = keys - {a}
        allowed = {"apply": [{"expect"}, {"expect_error"}], "query": [{"expect"}, {"expect_error"}],
                   "restore": [{"expect_digest"}, {"expect_protocol_error"}],
                   "send": [{"expect_protocol_error"}], "send_text": [{"expect_protocol_error"}],
                   "send_hex": [{"expect_protocol_error"}, {"expect_reply"}],
                   "send_parts": [{"expect_ignored"}]}[a]
        assert rest in allowed, (fname, n, keys)
    else:
        assert keys in ({"expect_state"}, {"expect_digest"}), (fname, n, keys)


def main():
    assert fnv1a64(b"") == "cbf29ce484222325", "SPEC 6.2 vector (empty)"
    assert fnv1a64(b"a") == "af63dc4c8601ec8c", "SPEC 6.2 vector ('a')"
    for g in (gen_initial, gen_route, gen_label, gen_lock, gen_salvo, gen_salvo_full, gen_dump_query,
              gen_validation_order, gen_types, gen_restore, gen_protocol, gen_big):
        g()
    written = []
    for s in SCENARIOS:
        for n, obj in enumerate(s.lines[1:], 2):
            check_line_format(s.fname, n, obj)
        written.append(s.write())
    written.append(gen_digest_vectors())
    for path, n in written:
        kind = "vectors" if path.endswith("digest-vectors.jsonl") else "steps"
        print("%-45s %5d %s" % (os.path.relpath(path, HERE), n, kind))


if __name__ == "__main__":
    sys.exit(main())

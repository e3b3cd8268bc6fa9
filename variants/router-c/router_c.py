#!/usr/bin/env python3
"""router-c: a Python (standard library only) variant of the nvs router controller.

Speaks nvs variant protocol v1 over the stdio transport (PROTOCOL.md §1.2):
one JSON object per line on stdin, one reply line per request on stdout.

Design (event-sourced, in the decide/evolve style):

  * The state is a plain dict of lists plus a dict of salvos.
  * ``decide(state, cmd, query)`` is a pure function: it validates a command
    against the state *before* the command and returns ``(result, events)``;
    it never mutates anything, so a rejected command trivially changes nothing.
  * ``evolve(state, events)`` is the only code that mutates the state; it
    applies the (already validated) events in place.
  * The canonical JSON bytes and the FNV-1a digest are computed only when
    asked (digest, snapshot, restore) and cached until the next mutation.
"""

import json
import os
import re
import signal
import sys

IMPL = "router-c 1.0 python"
PROTOCOL_VERSION = 1

MAX_MESSAGE = 16 * 1024 * 1024          # bytes, PROTOCOL.md §2 / §7
MAX_DEPTH = 64                          # PROTOCOL.md §7 (a MAY; we refuse deeper)
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
SEQ_LIMIT = 1 << 63                     # seq, time_ns: 0 <= v < 2^63

MAX_SIZE = 1024                         # inputs / outputs
MAX_LIST = 1024                         # list members in commands
MAX_CLIENT_BYTES = 64
MAX_NAME_BYTES = 32
MAX_LABEL_BYTES = 64
MAX_SALVOS = 64

FAULT_KINDS = ("crash", "abort", "exit", "hang", "wrong", "corrupt")


# ===========================================================================
# JSON: strict decoding, general compact encoding, canonical encoding
# ===========================================================================

class JsonError(ValueError):
    """Raised for input that Python's json module would accept but the
    protocol calls malformed."""


class RawNumber:
    """A JSON number that is not an integer in the signed 64-bit range:
    it has a fraction or an exponent, or its value is out of range.

    Such a number is never an *integer* in the sense of SPEC §3.2, so the
    domain only needs to know that it is "some other number"; its source
    text is kept so that it can be re-serialised faithfully (fault matching,
    received log)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, RawNumber) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return "RawNumber(%r)" % self.text


def _parse_int(text):
    # text matches -?(0|[1-9][0-9]*): at most 20 characters can be in range.
    if len(text) <= 18:
        return int(text)
    if len(text) > 20:
        return RawNumber(text)
    value = int(text)
    if INT64_MIN <= value <= INT64_MAX:
        return value
    return RawNumber(text)


def _reject_constant(name):
    raise JsonError("%s is not JSON" % name)


def _object_hook(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise JsonError("duplicate member name in object")
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_hook,
    parse_int=_parse_int,
    parse_float=RawNumber,
    parse_constant=_reject_constant,
    strict=True,
)

# A lone surrogate can only come from a \uD800-\uDFFF escape (the UTF-8
# decoder refuses encoded surrogates), so the tree walk for surrogates is only
# needed when the raw text contains such an escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _structure_problem(value, text):
    """Return a reason if the decoded value is nested deeper than MAX_DEPTH
    or contains a string with an unpaired surrogate, else None."""
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if not surrogates and text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    search = _SURROGATE.search
    stack = [(value, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            return "JSON nested deeper than %d levels" % MAX_DEPTH
        if type(node) is dict:
            if surrogates:
                for key in node:
                    if search(key):
                        return "unpaired UTF-16 surrogate escape"
            children = node.values()
        else:
            children = node
        for child in children:
            t = type(child)
            if t is dict or t is list:
                push((child, depth + 1))
            elif surrogates and t is str and search(child):
                return "unpaired UTF-16 surrogate escape"
    return None


def decode_message(text):
    """Strictly decode one JSON text; raise JsonError (a ValueError) if it is
    not acceptable under PROTOCOL.md."""
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise JsonError("JSON nested too deeply") from None
    if type(value) in (dict, list):
        problem = _structure_problem(value, text)
        if problem:
            raise JsonError(problem)
    elif type(value) is str and _SURROGATE.search(value):
        raise JsonError("unpaired UTF-16 surrogate escape")
    return value


_encode_string = json.encoder.encode_basestring   # non-ASCII kept raw


def compact(value):
    """Compact JSON text of any decoded value (member order as received,
    numbers as received). Used for fault matching and the received log."""
    parts = []
    _compact_into(value, parts)
    return "".join(parts)


def _compact_into(value, parts):
    t = type(value)
    if t is str:
        parts.append(_encode_string(value))
    elif t is int:
        parts.append(str(value))
    elif t is RawNumber:
        parts.append(value.text)
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif value is None:
        parts.append("null")
    elif t is dict:
        parts.append("{")
        first = True
        for key, item in value.items():
            if not first:
                parts.append(",")
            first = False
            parts.append(_encode_string(key))
            parts.append(":")
            _compact_into(item, parts)
        parts.append("}")
    elif t is list:
        parts.append("[")
        first = True
        for item in value:
            if not first:
                parts.append(",")
            first = False
            _compact_into(item, parts)
        parts.append("]")
    else:  # pragma: no cover - decoded values have no other types
        raise TypeError("cannot serialise %r" % (t,))


# Canonical encoder (SPEC §6.1). For values free of control characters and
# lone surrogates (guaranteed for a valid state) this produces exactly: no
# whitespace, members in insertion order, plain decimal integers, null, and
# strings whose only escapes are \" and \\ with everything else raw UTF-8.
_COMPACT_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False,
    allow_nan=False)


def dumps(value):
    """Compact JSON text of values built by this program (replies, state)."""
    return _COMPACT_ENCODER.encode(value)


def fnv1a64(data):
    """64-bit FNV-1a of a bytes object (SPEC §6.2)."""
    h = 0xcbf29ce484222325
    prime = 0x100000001b3
    mask = 0xFFFFFFFFFFFFFFFF
    n = len(data)
    whole = n - n % 4
    it = iter(memoryview(data)[:whole])
    # Reducing mod 2^64 once per 4 bytes is exact: XOR with a byte only
    # touches the low 8 bits and multiplication commutes with the reduction.
    for b0, b1, b2, b3 in zip(it, it, it, it):
        h = ((((((((h ^ b0) * prime) ^ b1) * prime) ^ b2) * prime)
              ^ b3) * prime) & mask
    for b in data[whole:]:
        h = ((h ^ b) * prime) & mask
    return h


def digest_hex(data):
    return "%016x" % fnv1a64(data)


# ===========================================================================
# Domain: state
# ===========================================================================

def initial_state(inputs, outputs):
    return {
        "inputs": inputs,
        "outputs": outputs,
        "routes": [o % inputs for o in range(outputs)],
        "input_labels": ["Input %d" % (i + 1) for i in range(inputs)],
        "output_labels": ["Output %d" % (o + 1) for o in range(outputs)],
        "locks": [None] * outputs,
        # name -> list of {"output": o, "input": i}, sorted by output
        "salvos": {},
    }


def _utf8(text):
    return text.encode("utf-8")


def canonical_state(state):
    """The canonical state object (SPEC §6), members in canonical order.
    Shares lists with ``state``: serialise it before the next mutation."""
    salvos = state["salvos"]
    return {
        "inputs": state["inputs"],
        "outputs": state["outputs"],
        "routes": state["routes"],
        "input_labels": state["input_labels"],
        "output_labels": state["output_labels"],
        "locks": state["locks"],
        "salvos": [{"name": name, "routes": salvos[name]}
                   for name in sorted(salvos, key=_utf8)],
    }


def canonical_bytes(state):
    return dumps(canonical_state(state)).encode("utf-8")


def state_digest(state):
    return digest_hex(canonical_bytes(state))


# ===========================================================================
# Domain: commands (decide is pure, evolve mutates)
# ===========================================================================

class Reject(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, code, message)
        self.code = code
        self.message = message


def _bad(message):
    raise Reject("bad_request", message)


def _short(value):
    text = value if type(value) is str else compact(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _valid_id(value, max_bytes):
    """A client id / salvo name / lock owner: 1..max_bytes bytes, no
    control characters."""
    return (type(value) is str and 0 < len(value) <= max_bytes
            and len(value.encode("utf-8")) <= max_bytes
            and _CONTROL.search(value) is None)


def _label_problem(text):
    """None if ``text`` is a valid label, else (code, message)."""
    if len(text) > MAX_LABEL_BYTES or len(text.encode("utf-8")) > MAX_LABEL_BYTES:
        return ("label_too_long", "label longer than %d bytes" % MAX_LABEL_BYTES)
    if _CONTROL.search(text):
        return ("bad_label", "label contains a control character")
    return None


# ---- shape pass helpers (SPEC §3.2) ---------------------------------------

_K_ROUTE = frozenset(("op", "client", "routes"))
_K_LABEL = frozenset(("op", "client", "kind", "labels"))
_K_LOCK = frozenset(("op", "client", "locks"))
_K_DEFINE = frozenset(("op", "client", "name", "routes"))
_K_NAMED = frozenset(("op", "client", "name"))
_K_DUMP = frozenset(("op",))
_K_ROUTE_ENTRY = frozenset(("output", "input"))
_K_LABEL_ENTRY = frozenset(("index", "text"))
_K_LOCK_ENTRY = frozenset(("output", "action"))


def _shape_members(cmd, keys):
    if cmd.keys() != keys:
        _bad("command must have exactly the members %s" % ", ".join(sorted(keys)))


def _shape_client(cmd):
    if not _valid_id(cmd["client"], MAX_CLIENT_BYTES):
        _bad("client must be a string of 1 to 64 bytes without control characters")


def _shape_name(cmd):
    if not _valid_id(cmd["name"], MAX_NAME_BYTES):
        _bad("name must be a string of 1 to 32 bytes without control characters")


def _shape_list(value, what):
    if type(value) is not list or not 0 < len(value) <= MAX_LIST:
        _bad("%s must be an array of 1 to %d elements" % (what, MAX_LIST))


def _shape_route_list(routes):
    _shape_list(routes, "routes")
    for entry in routes:
        if type(entry) is not dict or entry.keys() != _K_ROUTE_ENTRY:
            _bad("a route entry must be an object with exactly output and input")
        if type(entry["output"]) is not int or type(entry["input"]) is not int:
            _bad("output and input must be integers")


def _shape_route(cmd):
    _shape_members(cmd, _K_ROUTE)
    _shape_client(cmd)
    _shape_route_list(cmd["routes"])


def _shape_label(cmd):
    _shape_members(cmd, _K_LABEL)
    _shape_client(cmd)
    if type(cmd["kind"]) is not str or cmd["kind"] not in ("input", "output"):
        _bad('kind must be "input" or "output"')
    labels = cmd["labels"]
    _shape_list(labels, "labels")
    for entry in labels:
        if type(entry) is not dict or entry.keys() != _K_LABEL_ENTRY:
            _bad("a label entry must be an object with exactly index and text")
        if type(entry["index"]) is not int:
            _bad("index must be an integer")
        if type(entry["text"]) is not str:
            _bad("text must be a string")


def _shape_lock(cmd):
    _shape_members(cmd, _K_LOCK)
    _shape_client(cmd)
    locks = cmd["locks"]
    _shape_list(locks, "locks")
    for entry in locks:
        if type(entry) is not dict or entry.keys() != _K_LOCK_ENTRY:
            _bad("a lock entry must be an object with exactly output and action")
        if type(entry["output"]) is not int:
            _bad("output must be an integer")
        action = entry["action"]
        if type(action) is not str or action not in ("O", "U", "F"):
            _bad('action must be "O", "U" or "F"')


def _shape_define(cmd):
    _shape_members(cmd, _K_DEFINE)
    _shape_client(cmd)
    _shape_name(cmd)
    _shape_route_list(cmd["routes"])


def _shape_named(cmd):
    _shape_members(cmd, _K_NAMED)
    _shape_client(cmd)
    _shape_name(cmd)


def _shape_dump(cmd):
    _shape_members(cmd, _K_DUMP)


# ---- semantic pass + planning (SPEC §3.3, §4) -------------------------------

def _plan_routes(state, client, entries):
    n_out = state["outputs"]
    n_in = state["inputs"]
    routes = state["routes"]
    locks = state["locks"]
    seen = set()
    changes = []
    for entry in entries:
        out = entry["output"]
        inp = entry["input"]
        if not 0 <= out < n_out:
            raise Reject("out_of_range", "output %d not in [0, %d)" % (out, n_out))
        if not 0 <= inp < n_in:
            raise Reject("out_of_range", "input %d not in [0, %d)" % (inp, n_in))
        if out in seen:
            raise Reject("duplicate", "output %d listed twice" % out)
        seen.add(out)
        owner = locks[out]
        if owner is not None and owner != client:
            raise Reject("locked", "output %d is locked by another client" % out)
        if routes[out] != inp:
            changes.append((out, inp))
    changes.sort()
    result = {"ok": True,
              "changed": [{"output": o, "input": i} for o, i in changes]}
    return result, [("routes", changes)] if changes else []


def _decide_route(state, cmd):
    return _plan_routes(state, cmd["client"], cmd["routes"])


def _decide_label(state, cmd):
    kind = cmd["kind"]
    if kind == "input":
        count, current = state["inputs"], state["input_labels"]
    else:
        count, current = state["outputs"], state["output_labels"]
    seen = set()
    changes = []
    for entry in cmd["labels"]:
        index = entry["index"]
        text = entry["text"]
        if not 0 <= index < count:
            raise Reject("out_of_range", "%s index %d not in [0, %d)" % (kind, index, count))
        if index in seen:
            raise Reject("duplicate", "index %d listed twice" % index)
        seen.add(index)
        problem = _label_problem(text)
        if problem:
            raise Reject(*problem)
        if current[index] != text:
            changes.append((index, text))
    changes.sort(key=lambda change: change[0])
    result = {"ok": True, "kind": kind,
              "changed": [{"index": k, "text": t} for k, t in changes]}
    return result, [("labels", kind, changes)] if changes else []


def _decide_lock(state, cmd):
    client = cmd["client"]
    n_out = state["outputs"]
    locks = state["locks"]
    seen = set()
    changes = []
    for entry in cmd["locks"]:
        out = entry["output"]
        action = entry["action"]
        if not 0 <= out < n_out:
            raise Reject("out_of_range", "output %d not in [0, %d)" % (out, n_out))
        if out in seen:
            raise Reject("duplicate", "output %d listed twice" % out)
        seen.add(out)
        owner = locks[out]
        if action == "F":
            new = None
        elif owner is not None and owner != client:
            raise Reject("locked", "output %d is locked by another client" % out)
        elif action == "O":
            new = client
        else:  # "U"
            new = None
        if new != owner:
            changes.append((out, new))
    changes.sort(key=lambda change: change[0])
    result = {"ok": True,
              "changed": [{"output": o, "owner": w} for o, w in changes]}
    return result, [("locks", changes)] if changes else []


def _decide_define(state, cmd):
    name = cmd["name"]
    n_out = state["outputs"]
    n_in = state["inputs"]
    seen = set()
    pairs = []
    for entry in cmd["routes"]:
        out = entry["output"]
        inp = entry["input"]
        if not 0 <= out < n_out:
            raise Reject("out_of_range", "output %d not in [0, %d)" % (out, n_out))
        if not 0 <= inp < n_in:
            raise Reject("out_of_range", "input %d not in [0, %d)" % (inp, n_in))
        if out in seen:
            raise Reject("duplicate", "output %d listed twice" % out)
        seen.add(out)
        pairs.append((out, inp))
    salvos = state["salvos"]
    if name not in salvos and len(salvos) >= MAX_SALVOS:
        raise Reject("full", "%d salvos exist already" % MAX_SALVOS)
    pairs.sort()
    stored = [{"output": o, "input": i} for o, i in pairs]
    return ({"ok": True, "name": name, "size": len(stored)},
            [("salvo_put", name, stored)])


def _decide_fire(state, cmd):
    stored = state["salvos"].get(cmd["name"])
    if stored is None:
        raise Reject("not_found", "no salvo named %s" % _short(cmd["name"]))
    return _plan_routes(state, cmd["client"], stored)


def _decide_delete(state, cmd):
    name = cmd["name"]
    if name not in state["salvos"]:
        raise Reject("not_found", "no salvo named %s" % _short(name))
    return {"ok": True, "name": name}, [("salvo_delete", name)]


def _decide_dump(state, cmd):
    return {"ok": True, "state": canonical_state(state)}, []


# op -> (shape check, semantic decision)
OPS = {
    "route": (_shape_route, _decide_route),
    "label": (_shape_label, _decide_label),
    "lock": (_shape_lock, _decide_lock),
    "salvo_define": (_shape_define, _decide_define),
    "salvo_fire": (_shape_named, _decide_fire),
    "salvo_delete": (_shape_named, _decide_delete),
    "dump": (_shape_dump, _decide_dump),
}
READ_ONLY_OPS = frozenset(("dump",))


def decide(state, cmd, query=False):
    """Validate ``cmd`` against ``state`` (SPEC §4) and plan it.

    Returns ``(result, events)``. Pure: neither argument is modified. A
    rejected command yields a failure result and no events."""
    try:
        if type(cmd) is not dict:
            raise Reject("bad_request", "command is not a JSON object")
        op = cmd.get("op")
        if type(op) is not str:
            raise Reject("bad_request", "op missing or not a string")
        handlers = OPS.get(op)
        if handlers is None:
            raise Reject("unknown_op", "unknown op %s" % _short(op))
        if query and op not in READ_ONLY_OPS:
            raise Reject("not_a_query", "op %s is not read-only" % op)
        shape, semantic = handlers
        shape(cmd)
        return semantic(state, cmd)
    except Reject as rejection:
        return ({"ok": False, "error": rejection.code,
                 "message": rejection.message}, [])


def evolve(state, events):
    """Apply planned events to ``state`` in place."""
    for event in events:
        kind = event[0]
        if kind == "routes":
            routes = state["routes"]
            for out, inp in event[1]:
                routes[out] = inp
        elif kind == "labels":
            labels = state["input_labels" if event[1] == "input" else "output_labels"]
            for index, text in event[2]:
                labels[index] = text
        elif kind == "locks":
            locks = state["locks"]
            for out, owner in event[1]:
                locks[out] = owner
        elif kind == "salvo_put":
            state["salvos"][event[1]] = event[2]
        elif kind == "salvo_delete":
            del state["salvos"][event[1]]
        else:  # pragma: no cover
            raise ValueError("unknown event %r" % (kind,))


def corrupt_event(state):
    """The corrupt-on fault (PROTOCOL §6): route of output 0 := (route+1) mod I."""
    return ("routes", [(0, (state["routes"][0] + 1) % state["inputs"])])


# ---- restore (SPEC §6.3) ----------------------------------------------------

class BadState(Exception):
    pass


_K_STATE = frozenset(("inputs", "outputs", "routes", "input_labels",
                      "output_labels", "locks", "salvos"))
_K_SALVO = frozenset(("name", "routes"))


def state_from_canonical(value):
    """Validate a received canonical state and return a fresh internal state.
    Raises BadState with a reason."""
    if type(value) is not dict or value.keys() != _K_STATE:
        raise BadState("state must be an object with exactly the members %s"
                       % ", ".join(sorted(_K_STATE)))
    n_in = value["inputs"]
    n_out = value["outputs"]
    for what, n in (("inputs", n_in), ("outputs", n_out)):
        if type(n) is not int or not 1 <= n <= MAX_SIZE:
            raise BadState("%s must be an integer in [1, %d]" % (what, MAX_SIZE))

    routes = value["routes"]
    if type(routes) is not list or len(routes) != n_out:
        raise BadState("routes must be an array of %d integers" % n_out)
    for r in routes:
        if type(r) is not int or not 0 <= r < n_in:
            raise BadState("every route must be an integer in [0, %d)" % n_in)

    labels = {}
    for what, n in (("input_labels", n_in), ("output_labels", n_out)):
        items = value[what]
        if type(items) is not list or len(items) != n:
            raise BadState("%s must be an array of %d strings" % (what, n))
        for text in items:
            if type(text) is not str or _label_problem(text):
                raise BadState("%s contains an invalid label" % what)
        labels[what] = list(items)

    locks = value["locks"]
    if type(locks) is not list or len(locks) != n_out:
        raise BadState("locks must be an array of %d elements" % n_out)
    for owner in locks:
        if owner is not None and not _valid_id(owner, MAX_CLIENT_BYTES):
            raise BadState("every lock must be null or a valid client id")

    salvo_list = value["salvos"]
    if type(salvo_list) is not list or len(salvo_list) > MAX_SALVOS:
        raise BadState("salvos must be an array of at most %d salvos" % MAX_SALVOS)
    salvos = {}
    previous_name = None
    for salvo in salvo_list:
        if type(salvo) is not dict or salvo.keys() != _K_SALVO:
            raise BadState("a salvo must be an object with exactly name and routes")
        name = salvo["name"]
        if not _valid_id(name, MAX_NAME_BYTES):
            raise BadState("invalid salvo name")
        name_bytes = name.encode("utf-8")
        if previous_name is not None and not previous_name < name_bytes:
            raise BadState("salvo names must be distinct and sorted by UTF-8 bytes")
        previous_name = name_bytes
        entries = salvo["routes"]
        if type(entries) is not list or not 0 < len(entries) <= MAX_LIST:
            raise BadState("salvo routes must be an array of 1 to %d routes" % MAX_LIST)
        stored = []
        last_out = -1
        for entry in entries:
            if type(entry) is not dict or entry.keys() != _K_ROUTE_ENTRY:
                raise BadState("a salvo route must be an object with exactly output and input")
            out = entry["output"]
            inp = entry["input"]
            if type(out) is not int or type(inp) is not int \
                    or not 0 <= out < n_out or not 0 <= inp < n_in:
                raise BadState("salvo route out of range")
            if out <= last_out:
                raise BadState("salvo routes must have distinct outputs in ascending order")
            last_out = out
            stored.append({"output": out, "input": inp})
        salvos[name] = stored

    return {
        "inputs": n_in,
        "outputs": n_out,
        "routes": list(routes),
        "input_labels": labels["input_labels"],
        "output_labels": labels["output_labels"],
        "locks": list(locks),
        "salvos": salvos,
    }


# ===========================================================================
# Protocol
# ===========================================================================

def parse_fault(spec):
    """'KIND-on=S' -> (KIND, S); raise ValueError if not well-formed."""
    head, sep, needle = spec.partition("=")
    if not sep or not head.endswith("-on") or head[:-3] not in FAULT_KINDS:
        raise ValueError("bad fault %r: expected KIND-on=S with KIND one of %s"
                         % (spec, ", ".join(FAULT_KINDS)))
    return head[:-3], needle


def _seq_value(value):
    return type(value) is int and 0 <= value < SEQ_LIMIT


class Controller:
    """Protocol engine: one request body in, one reply line (or a fatal
    fault action) out. Free of process-level side effects, so it can be
    tested in-process; the main loop carries out the deadly faults."""

    def __init__(self, inputs=16, outputs=16, faults=(), received_log=None,
                 variant=""):
        self.state = initial_state(inputs, outputs)
        self.faults = list(faults)           # [(kind, substring)], in order
        self.received_log = received_log     # binary file object or None
        self.variant = variant               # NVS_VARIANT, "" when unset
        self._canonical = None               # cached (bytes, digest)

    # -- state helpers --

    def _mutated(self):
        self._canonical = None

    def canonical(self):
        if self._canonical is None:
            data = canonical_bytes(self.state)
            self._canonical = (data, digest_hex(data))
        return self._canonical

    # -- replies --

    @staticmethod
    def _line(obj):
        return dumps(obj).encode("utf-8") + b"\n"

    def _error(self, seq, code, reason):
        return self._line({"type": "error", "seq": seq, "code": code,
                           "reason": reason})

    # -- entry point --

    def handle(self, body):
        """Process one message (bytes, without its LF).

        Returns ``(reply, action)``: ``reply`` is the reply line (bytes,
        ending in LF) or None; ``action`` is None or one of "crash",
        "abort", "exit", "hang", meaning the caller must perform that fault
        instead of replying."""
        if len(body) > MAX_MESSAGE:
            return self._error(None, "too_large",
                               "message longer than %d bytes" % MAX_MESSAGE), None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(None, "malformed", "message is not valid UTF-8"), None
        try:
            msg = decode_message(text)
        except ValueError as exc:
            return self._error(None, "malformed", "invalid JSON: %s" % exc), None
        if type(msg) is not dict:
            return self._error(None, "malformed", "message is not a JSON object"), None

        seq = msg.get("seq")
        echo = seq if _seq_value(seq) else None
        mtype = msg.get("type")
        if type(mtype) is not str:
            return self._error(echo, "malformed", '"type" missing or not a string'), None
        handler = self._REQUESTS.get(mtype)
        if handler is None:
            return self._error(echo, "unknown_type",
                               "unknown message type %s" % _short(mtype)), None
        if self.received_log is not None and mtype in ("apply", "query"):
            self._log_received(msg)
        if echo is None:
            return self._error(None, "malformed",
                               '"seq" missing or not an integer in [0, 2^63)'), None
        return handler(self, msg, seq)

    def _log_received(self, msg):
        """--received-log: the message plus "received_by" (PROTOCOL.md §6),
        one compact line, flushed before the message is processed. A
        "received_by" the message already has is replaced, so the line stays
        one valid JSON object."""
        logged = dict(msg)                   # msg itself is processed as received
        logged.pop("received_by", None)
        logged["received_by"] = self.variant
        self.received_log.write(compact(logged).encode("utf-8") + b"\n")
        self.received_log.flush()

    # -- request handlers --

    def _match_fault(self, value):
        if not self.faults:
            return None
        text = compact(value)
        for kind, needle in self.faults:
            if needle in text:
                return kind
        return None

    def _command(self, msg, seq, member, reply_type, query):
        if member not in msg:
            return self._error(seq, "malformed", "%s missing" % member), None
        if not query and not _seq_value(msg.get("time_ns")):
            return self._error(seq, "malformed",
                               '"time_ns" missing or not an integer in [0, 2^63)'), None
        cmd = msg[member]
        fault = self._match_fault(cmd)
        if fault in ("crash", "abort", "exit", "hang"):
            return None, fault
        result, events = decide(self.state, cmd, query)
        if fault == "wrong":
            result = {"ok": True, "fault": "wrong"}
        reply = self._line({"type": reply_type, "seq": seq, "result": result})
        if events:
            evolve(self.state, events)
            self._mutated()
        if fault == "corrupt":
            evolve(self.state, [corrupt_event(self.state)])
            self._mutated()
        return reply, None

    def _apply(self, msg, seq):
        return self._command(msg, seq, "cmd", "applied", False)

    def _query(self, msg, seq):
        return self._command(msg, seq, "query", "answer", True)

    def _digest(self, msg, seq):
        return self._line({"type": "digest", "seq": seq,
                           "digest": self.canonical()[1]}), None

    def _snapshot(self, msg, seq):
        data, digest = self.canonical()
        return (b'{"type":"state","seq":%d,"state":%s,"digest":"%s"}\n'
                % (seq, data, digest.encode("ascii"))), None

    def _restore(self, msg, seq):
        if "state" not in msg:
            return self._error(seq, "malformed", '"state" missing'), None
        try:
            new_state = state_from_canonical(msg["state"])
        except BadState as exc:
            return self._error(seq, "bad_state", str(exc)), None
        self.state = new_state
        self._mutated()
        return self._line({"type": "restored", "seq": seq,
                           "digest": self.canonical()[1]}), None

    def _ping(self, msg, seq):
        return self._line({"type": "pong", "seq": seq}), None

    _REQUESTS = {
        "apply": _apply,
        "query": _query,
        "digest": _digest,
        "snapshot": _snapshot,
        "restore": _restore,
        "ping": _ping,
    }


# ===========================================================================
# Process level: options, faults, main loop
# ===========================================================================

class UsageError(Exception):
    pass


def _size_option(name, value):
    if not re.fullmatch(r"[0-9]{1,9}", value) or not 1 <= int(value) <= MAX_SIZE:
        raise UsageError("%s must be an integer from 1 to %d, got %r"
                         % (name, MAX_SIZE, value))
    return int(value)


def parse_args(argv):
    """Return dict(inputs, outputs, faults, received_log); raise UsageError."""
    config = {"inputs": 16, "outputs": 16, "faults": [], "received_log": None}
    with_value = ("--inputs", "--outputs", "--fault", "--received-log")
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, sep, value = arg.partition("=")
        if sep and name in with_value:
            i += 1
        elif arg in with_value:
            if i + 1 >= len(argv):
                raise UsageError("option %s needs a value" % arg)
            name, value = arg, argv[i + 1]
            i += 2
        else:
            raise UsageError("unknown argument %r" % arg)
        if name == "--inputs":
            config["inputs"] = _size_option(name, value)
        elif name == "--outputs":
            config["outputs"] = _size_option(name, value)
        elif name == "--fault":
            try:
                config["faults"].append(parse_fault(value))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        else:
            if not value:
                raise UsageError("--received-log needs a path")
            config["received_log"] = value
    return config


def _die_by_signal(signum):
    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    while True:  # the signal is delivered before kill() returns; belt and braces
        signal.pause()


def _hang_forever(stream):
    """hang-on: reply to nothing ever again. Keep draining (and ignoring)
    input so the writer never blocks; then sleep until killed."""
    try:
        while stream.read1(65536):
            pass
    except (OSError, ValueError):
        pass
    while True:
        signal.pause()


def _read_message(stream):
    """Read one line. Returns (body, too_long) or None at EOF. An overlong
    line is consumed up to its LF without being kept in memory."""
    line = stream.readline(MAX_MESSAGE + 1)
    if not line:
        return None
    if line.endswith(b"\n"):
        return line[:-1], False
    if len(line) <= MAX_MESSAGE:
        return line, False            # last line, without LF, at EOF
    while True:                       # discard the rest of the overlong line
        chunk = stream.readline(1 << 20)
        if not chunk or chunk.endswith(b"\n"):
            return b"", True


def main(argv=None):
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write("router_c: %s\n" % exc)
        sys.stderr.write("usage: router_c.py [--inputs N] [--outputs N] "
                         "[--fault KIND-on=S]... [--received-log PATH]\n")
        return 2
    log = None
    if config["received_log"] is not None:
        try:
            log = open(config["received_log"], "ab")
        except OSError as exc:
            sys.stderr.write("router_c: cannot open received log: %s\n" % exc)
            return 2

    variant = os.environb.get(b"NVS_VARIANT", b"").decode("utf-8", "replace")
    controller = Controller(config["inputs"], config["outputs"],
                            config["faults"], log, variant)
    out = sys.stdout.buffer
    inp = sys.stdin.buffer
    out.write(Controller._line({"type": "hello", "protocol": PROTOCOL_VERSION,
                                "variant": variant, "impl": IMPL}))
    out.flush()

    while True:
        read = _read_message(inp)
        if read is None:
            break
        body, too_long = read
        if too_long:
            reply = controller._error(None, "too_large",
                                      "message longer than %d bytes" % MAX_MESSAGE)
            action = None
        else:
            try:
                reply, action = controller.handle(body)
            except Exception as exc:  # defensive: never die on input
                sys.stderr.write("router_c: internal error: %r\n" % (exc,))
                reply, action = controller._error(None, "malformed",
                                                  "internal error"), None
        if action == "crash":
            _die_by_signal(signal.SIGSEGV)
        elif action == "abort":
            sys.stdout.flush()
            os.abort()
        elif action == "exit":
            out.flush()
            os._exit(3)
        elif action == "hang":
            out.flush()
            _hang_forever(inp)
        out.write(reply)
        out.flush()
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

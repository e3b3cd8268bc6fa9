"""Unit tests for router-c (standard library unittest only).

Run: cd variants/router-c && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -v test_router_c
"""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import router_c as rc  # noqa: E402

SCRIPT = os.path.join(HERE, "router_c.py")
TIMEOUT = 30


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def naive_fnv(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    return h


def route(client, *pairs):
    return {"op": "route", "client": client,
            "routes": [{"output": o, "input": i} for o, i in pairs]}


def label(client, kind, *pairs):
    return {"op": "label", "client": client, "kind": kind,
            "labels": [{"index": k, "text": t} for k, t in pairs]}


def lock(client, *pairs):
    return {"op": "lock", "client": client,
            "locks": [{"output": o, "action": a} for o, a in pairs]}


def define(client, name, *pairs):
    return {"op": "salvo_define", "client": client, "name": name,
            "routes": [{"output": o, "input": i} for o, i in pairs]}


def fire(client, name):
    return {"op": "salvo_fire", "client": client, "name": name}


def delete(client, name):
    return {"op": "salvo_delete", "client": client, "name": name}


class Domain:
    """Drive decide/evolve directly, like the protocol does."""

    def __init__(self, inputs=4, outputs=4):
        self.state = rc.initial_state(inputs, outputs)

    def apply(self, cmd):
        result, events = rc.decide(self.state, cmd, query=False)
        rc.evolve(self.state, events)
        return result

    def query(self, cmd):
        before = rc.canonical_bytes(self.state)
        result, events = rc.decide(self.state, cmd, query=True)
        assert events == []
        assert rc.canonical_bytes(self.state) == before
        return result


def wire(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def reply(controller, body):
    if not isinstance(body, bytes):
        body = wire(body)
    line, action = controller.handle(body)
    assert action is None, action
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return json.loads(line)


# ---------------------------------------------------------------------------
# JSON decoding (protocol-level strictness)
# ---------------------------------------------------------------------------

class TestJsonDecoding(unittest.TestCase):

    def bad(self, text):
        with self.assertRaises(ValueError, msg=text):
            rc.decode_message(text)

    def test_constants_refused(self):
        for text in ('{"a":NaN}', '{"a":Infinity}', '{"a":-Infinity}', "NaN"):
            self.bad(text)

    def test_unpaired_surrogates_refused(self):
        for text in ('{"a":"\\ud800"}', '{"a":"\\udc00"}', '{"a":"x\\uDBFFy"}',
                     '{"\\ud800":1}', '{"a":"\\udc00\\ud800"}', '["\\ud83d"]',
                     '"\\ud800"'):
            self.bad(text)

    def test_surrogate_pair_accepted(self):
        self.assertEqual(rc.decode_message('{"a":"\\ud83d\\ude00"}'), {"a": "\U0001F600"})
        # an escaped backslash followed by "ud800" is not an escape
        self.assertEqual(rc.decode_message('{"a":"\\\\ud800"}'), {"a": "\\ud800"})

    def test_duplicate_keys_refused(self):
        self.bad('{"a":1,"a":2}')
        self.bad('{"x":{"b":1,"b":1}}')
        self.bad('[{"k":1,"k":1}]')

    def test_syntax_errors(self):
        for text in ("", " ", "{", '{"a":1}x', "{'a':1}", '{"a":01}', '{"a":1.}',
                     '{"a":.5}', '{"a":+1}', '{"a":"\t"}', '{"a":"\\x"}', "\ufeff{}",
                     '{"a":tru}', '{"a":[1,]}', '{"a":1,}', '{"a":"\\u12"}'):
            self.bad(text)

    def test_whitespace_allowed(self):
        self.assertEqual(rc.decode_message(' \t{ "a" : [ 1 , 2 ] }\r '), {"a": [1, 2]})

    def test_integers_and_other_numbers(self):
        v = rc.decode_message('[3,-0,9223372036854775807,-9223372036854775808,'
                              '9223372036854775808,-9223372036854775809,3.0,3e0,1E2,-0.0,1e400]')
        self.assertEqual(v[:4], [3, 0, 2 ** 63 - 1, -2 ** 63])
        for x in v[:4]:
            self.assertIs(type(x), int)
        for x in v[4:]:
            self.assertIs(type(x), rc.RawNumber)
        self.assertEqual([x.text for x in v[4:]],
                         ["9223372036854775808", "-9223372036854775809", "3.0", "3e0",
                          "1E2", "-0.0", "1e400"])

    def test_huge_integer_is_not_malformed(self):
        v = rc.decode_message('{"n":%s}' % ("9" * 5000))
        self.assertIs(type(v["n"]), rc.RawNumber)

    def test_booleans_stay_booleans(self):
        v = rc.decode_message('[true,false,null]')
        self.assertEqual(v, [True, False, None])
        self.assertIs(type(v[0]), bool)

    def test_depth_limit(self):
        ok = '{"a":' + "[" * 63 + "]" * 63 + "}"      # depth 64
        rc.decode_message(ok)
        self.bad('{"a":' + "[" * 64 + "]" * 64 + "}")  # depth 65
        self.bad("[" * 100000)
        self.bad('{"a":' * 100000)
        self.bad("[" * 100000 + "]" * 100000)

    def test_brackets_inside_strings_do_not_count(self):
        text = '{"a":"' + "[" * 1000 + '"}'
        self.assertEqual(rc.decode_message(text), {"a": "[" * 1000})

    def test_compact_roundtrip(self):
        text = '{"op":"x","a":[1,-2,3.50,1e9,true,false,null,"q\\"\\\\\\n\u00fc/"],"b":{}}'
        self.assertEqual(rc.compact(rc.decode_message(text)), text)


# ---------------------------------------------------------------------------
# canonical bytes and digest
# ---------------------------------------------------------------------------

class TestCanonical(unittest.TestCase):

    def test_fnv_vectors(self):
        self.assertEqual(rc.digest_hex(b""), "cbf29ce484222325")
        self.assertEqual(rc.digest_hex(b"a"), "af63dc4c8601ec8c")

    def test_fnv_matches_naive_for_all_tail_lengths(self):
        data = bytes(range(256)) * 3
        for n in list(range(0, 20)) + [255, 256, 257, 767, 768]:
            self.assertEqual(rc.fnv1a64(data[:n]), naive_fnv(data[:n]), n)

    def test_digest_is_16_lowercase_hex(self):
        for data in (b"", b"a", b"hello", bytes(1000)):
            d = rc.digest_hex(data)
            self.assertRegex(d, r"^[0-9a-f]{16}$")
            self.assertEqual(int(d, 16), naive_fnv(data))

    def test_initial_1x1(self):
        self.assertEqual(
            rc.canonical_bytes(rc.initial_state(1, 1)),
            b'{"inputs":1,"outputs":1,"routes":[0],"input_labels":["Input 1"],'
            b'"output_labels":["Output 1"],"locks":[null],"salvos":[]}')

    def test_initial_routes_wrap(self):
        st = rc.initial_state(3, 7)
        self.assertEqual(st["routes"], [0, 1, 2, 0, 1, 2, 0])
        self.assertEqual(st["input_labels"], ["Input 1", "Input 2", "Input 3"])
        self.assertEqual(st["output_labels"][6], "Output 7")
        self.assertEqual(st["locks"], [None] * 7)

    def test_spec_example_2x2(self):
        d = Domain(2, 2)
        self.assertTrue(d.apply(route("x", (0, 1)))["ok"])
        self.assertTrue(d.apply(label("x", "input", (1, 'Cam "B"')))["ok"])
        self.assertTrue(d.apply(label("x", "output", (1, "Ausgang 2 \u00fc")))["ok"])
        self.assertTrue(d.apply(lock("panel-1", (1, "O")))["ok"])
        self.assertTrue(d.apply(define("x", "a", (0, 1)))["ok"])
        expected = ('{"inputs":2,"outputs":2,"routes":[1,1],"input_labels":["Input 1",'
                    '"Cam \\"B\\""],"output_labels":["Output 1","Ausgang 2 \u00fc"],'
                    '"locks":[null,"panel-1"],"salvos":[{"name":"a","routes":'
                    '[{"output":0,"input":1}]}]}').encode("utf-8")
        self.assertEqual(rc.canonical_bytes(d.state), expected)
        self.assertEqual(rc.state_digest(d.state), "%016x" % naive_fnv(expected))

    def test_escaping_rules(self):
        d = Domain(1, 1)
        text = 'a\\b"c/d\u2028\u0085\U0001F600\u00e9'
        self.assertTrue(d.apply(label("x", "input", (0, text)))["ok"])
        data = rc.canonical_bytes(d.state)
        self.assertIn(b'"a\\\\b\\"c/d' + "\u2028\u0085\U0001F600\u00e9".encode("utf-8") + b'"', data)
        self.assertNotIn(b"\\u", data)
        self.assertNotIn(b"\\/", data)
        self.assertNotIn(b" ", data.replace(b"Input 1", b"").replace(b"Output 1", b""))

    def test_salvos_sorted_by_utf8_bytes(self):
        d = Domain(2, 2)
        names = ["b", "ab", "a", "\uffff", "\U00010000", "Z", "\u00e9"]
        for n in names:
            self.assertTrue(d.apply(define("x", n, (1, 0), (0, 1)))["ok"])
        canon = json.loads(rc.canonical_bytes(d.state))
        got = [s["name"] for s in canon["salvos"]]
        self.assertEqual(got, sorted(names, key=lambda s: s.encode("utf-8")))
        self.assertEqual(got[:3], ["Z", "a", "ab"])
        self.assertEqual(canon["salvos"][0]["routes"],
                         [{"output": 0, "input": 1}, {"output": 1, "input": 0}])
        self.assertEqual(list(canon["salvos"][0]), ["name", "routes"])
        self.assertEqual(list(canon), ["inputs", "outputs", "routes", "input_labels",
                                       "output_labels", "locks", "salvos"])


# ---------------------------------------------------------------------------
# domain: ops
# ---------------------------------------------------------------------------

class DomainCase(unittest.TestCase):

    def setUp(self):
        self.d = Domain(4, 4)

    def err(self, cmd, code, query=False):
        before = rc.canonical_bytes(self.d.state)
        result = self.d.query(cmd) if query else self.d.apply(cmd)
        self.assertEqual(result.get("ok"), False, result)
        self.assertEqual(result["error"], code, (cmd, result))
        self.assertEqual(set(result), {"ok", "error", "message"})
        self.assertIsInstance(result["message"], str)
        self.assertEqual(rc.canonical_bytes(self.d.state), before, "failed command changed state")
        return result


class TestSpecExamples(DomainCase):

    def test_section7_table(self):
        a = self.d.apply
        self.assertEqual(a(route("a", (1, 3), (2, 2))),
                         {"ok": True, "changed": [{"output": 1, "input": 3}]})
        self.err(route("a", (4, 0)), "out_of_range")
        self.err(route("a", (-1, 0)), "out_of_range")
        self.err({"op": "route", "client": "a", "routes": [{"output": 1.0, "input": 0}]},
                 "bad_request")
        self.err({"op": "route", "client": "a", "routes": []}, "bad_request")
        self.err(route("a", (0, 1), (0, 2)), "duplicate")
        self.assertEqual(a(lock("b", (0, "O"))),
                         {"ok": True, "changed": [{"output": 0, "owner": "b"}]})
        self.err(route("a", (0, 1)), "locked")
        self.assertEqual(a(lock("a", (0, "F"))),
                         {"ok": True, "changed": [{"output": 0, "owner": None}]})
        self.assertEqual(a(label("a", "output", (0, "PGM"))),
                         {"ok": True, "kind": "output", "changed": [{"index": 0, "text": "PGM"}]})
        self.err(label("a", "output", (0, "a\nb")), "bad_label")
        self.err({"op": "explode"}, "unknown_op")
        self.err({"op": "route"}, "bad_request")
        self.err([1, 2], "bad_request")


class TestRoute(DomainCase):

    def test_changed_sorted_and_only_changes(self):
        r = self.d.apply(route("a", (3, 0), (0, 0), (1, 2), (2, 2)))
        self.assertEqual(r, {"ok": True, "changed": [{"output": 1, "input": 2},
                                                     {"output": 3, "input": 0}]})
        self.assertEqual(self.d.state["routes"], [0, 2, 2, 0])

    def test_no_change_gives_empty_list(self):
        self.assertEqual(self.d.apply(route("a", (2, 2))), {"ok": True, "changed": []})

    def test_own_lock_allows_route(self):
        self.d.apply(lock("a", (1, "O")))
        self.assertEqual(self.d.apply(route("a", (1, 0)))["changed"], [{"output": 1, "input": 0}])
        self.err(route("b", (1, 1)), "locked")

    def test_locked_even_without_change(self):
        self.d.apply(lock("b", (2, "O")))
        self.err(route("a", (2, 2)), "locked")
        self.assertEqual(self.d.apply(route("b", (2, 2))), {"ok": True, "changed": []})

    def test_all_or_nothing(self):
        self.d.apply(lock("b", (3, "O")))
        self.err(route("a", (0, 3), (3, 0)), "locked")
        self.assertEqual(self.d.state["routes"], [0, 1, 2, 3])

    def test_ranges(self):
        self.err(route("a", (0, 4)), "out_of_range")
        self.err(route("a", (0, -1)), "out_of_range")
        self.err(route("a", (2 ** 63 - 1, 0)), "out_of_range")
        self.err(route("a", (0, -2 ** 63)), "out_of_range")

    def test_entry_order_decides(self):
        self.d.apply(lock("b", (0, "O")))
        # entry 0 is locked, entry 1 out of range: entry 0 fails first
        self.err(route("a", (0, 1), (9, 0)), "locked")
        # entry 0 out of range, entry 1 locked
        self.err(route("a", (9, 1), (0, 0)), "out_of_range")
        # input out of range is checked before duplicate within an entry
        self.err(route("a", (1, 1), (1, 9)), "out_of_range")
        # duplicate before locked
        self.err(route("a", (1, 1), (1, 1), (0, 0)), "duplicate")
        self.err(route("a", (0, 1), (0, 1)), "locked")

    def test_shape_errors(self):
        good = route("a", (0, 1))
        variants = []
        for key in ("op", "client", "routes"):
            c = dict(good)
            del c[key]
            variants.append(c)
        variants.append(dict(good, extra=1))
        for bad_int in (True, False, None, "1", 1.5, rc.RawNumber("1.0"), rc.RawNumber("1e0"),
                        rc.RawNumber("9223372036854775808"), [1], {}):
            variants.append({"op": "route", "client": "a", "routes": [{"output": bad_int, "input": 0}]})
            variants.append({"op": "route", "client": "a", "routes": [{"output": 0, "input": bad_int}]})
        variants += [
            {"op": "route", "client": "a", "routes": [{"output": 0}]},
            {"op": "route", "client": "a", "routes": [{"output": 0, "input": 1, "x": 1}]},
            {"op": "route", "client": "a", "routes": [[0, 1]]},
            {"op": "route", "client": "a", "routes": {"output": 0, "input": 1}},
            {"op": "route", "client": "a", "routes": None},
            {"op": "route", "client": "a", "routes": [{"output": 0, "input": 1}] * 1025},
            # a shape error late in the command still wins over a semantic error early
            {"op": "route", "client": "a", "routes": [{"output": 99, "input": 0}, {"output": "x", "input": 0}]},
        ]
        for c in variants:
            self.err(c, "bad_request")

    def test_list_of_1024_is_shape_ok(self):
        # 1024 entries passes the shape check; the semantic pass finds the duplicate
        self.err({"op": "route", "client": "a", "routes": [{"output": 0, "input": 1}] * 1024}, "duplicate")
        big = Domain(1024, 1024)
        r = big.apply(route("a", *[(o, 1023 - o) for o in range(1024)]))
        self.assertEqual(len(r["changed"]), 1024)

    def test_client_rules(self):
        for client in ("", "x" * 65, "\u00e9" * 33, "a\tb", "a\x7f", "\x00", 5, None, ["a"], True):
            self.err({"op": "route", "client": client, "routes": [{"output": 0, "input": 1}]},
                     "bad_request")
        for client in ("x" * 64, "\u00e9" * 32, "\U0001F600" * 16, "a b", "\u0085"):
            self.assertTrue(self.d.apply(route(client, (0, 0)))["ok"], client)


class TestLabel(DomainCase):

    def test_changed_sorted_and_kinds(self):
        r = self.d.apply(label("a", "input", (3, "C"), (0, "Input 1"), (1, "B")))
        self.assertEqual(r, {"ok": True, "kind": "input",
                             "changed": [{"index": 1, "text": "B"}, {"index": 3, "text": "C"}]})
        self.assertEqual(self.d.state["input_labels"], ["Input 1", "B", "Input 3", "C"])
        self.assertEqual(self.d.state["output_labels"][1], "Output 2")

    def test_index_range_per_kind(self):
        d = Domain(2, 5)
        self.d = d
        self.err(label("a", "input", (2, "x")), "out_of_range")
        self.assertTrue(d.apply(label("a", "output", (4, "x")))["ok"])
        self.err(label("a", "output", (5, "x")), "out_of_range")
        self.err(label("a", "output", (-1, "x")), "out_of_range")

    def test_text_rules(self):
        ok = ["", "x" * 64, "\u00e9" * 32, "\U0001F600" * 16, "\u0080\u009f", "\u2028", " "]
        for i, text in enumerate(ok):
            self.assertTrue(self.d.apply(label("a", "output", (i % 4, text)))["ok"], repr(text))
        self.err(label("a", "input", (0, "x" * 65)), "label_too_long")
        self.err(label("a", "input", (0, "\u00e9" * 32 + "x")), "label_too_long")
        self.err(label("a", "input", (0, "\U0001F600" * 16 + "x")), "label_too_long")
        for ch in ("\x00", "\x1f", "\x7f", "\n", "\r", "\t"):
            self.err(label("a", "input", (0, "a" + ch)), "bad_label")
        # length is checked before control characters
        self.err(label("a", "input", (0, "\n" * 65)), "label_too_long")

    def test_order(self):
        self.err(label("a", "input", (0, "\n"), (9, "x")), "bad_label")
        self.err(label("a", "input", (9, "x"), (0, "\n")), "out_of_range")
        self.err(label("a", "input", (0, "x"), (0, "\n")), "duplicate")
        self.err(label("a", "input", (0, "x"), (0, "y" * 70)), "duplicate")

    def test_locks_do_not_protect_labels(self):
        self.d.apply(lock("b", (0, "O")))
        self.assertTrue(self.d.apply(label("a", "output", (0, "x")))["ok"])

    def test_shape(self):
        for c in [
            {"op": "label", "client": "a", "kind": "in", "labels": [{"index": 0, "text": "x"}]},
            {"op": "label", "client": "a", "kind": "Input", "labels": [{"index": 0, "text": "x"}]},
            {"op": "label", "client": "a", "kind": None, "labels": [{"index": 0, "text": "x"}]},
            {"op": "label", "client": "a", "kind": ["input"], "labels": [{"index": 0, "text": "x"}]},
            {"op": "label", "client": "a", "labels": [{"index": 0, "text": "x"}]},
            {"op": "label", "client": "a", "kind": "input", "labels": []},
            {"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": 5}]},
            {"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": None}]},
            {"op": "label", "client": "a", "kind": "input", "labels": [{"index": "0", "text": "x"}]},
            {"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0}]},
            {"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": "x", "z": 0}]},
            {"op": "label", "client": "", "kind": "input", "labels": [{"index": 0, "text": "x"}]},
            {"op": "label", "client": "a", "kind": "input", "labels": [{"index": 0, "text": "x"}], "x": 1},
            # shape beats semantic errors anywhere
            {"op": "label", "client": "a", "kind": "input",
             "labels": [{"index": 0, "text": "\n"}, {"index": 1.5, "text": "x"}]},
        ]:
            self.err(c, "bad_request")


class TestLock(DomainCase):

    def test_action_table(self):
        # (initial owner, action) -> expected (error or new owner)
        table = {
            (None, "O"): "me", ("me", "O"): "me", ("other", "O"): "locked",
            (None, "U"): None, ("me", "U"): None, ("other", "U"): "locked",
            (None, "F"): None, ("me", "F"): None, ("other", "F"): None,
        }
        for (owner, action), expected in table.items():
            d = Domain(2, 2)
            self.d = d
            if owner is not None:
                d.apply(lock(owner, (1, "O")))
            if expected == "locked":
                self.err(lock("me", (1, action)), "locked")
                self.assertEqual(d.state["locks"][1], owner)
                continue
            r = d.apply(lock("me", (1, action)))
            changed = [] if expected == owner else [{"output": 1, "owner": expected}]
            self.assertEqual(r, {"ok": True, "changed": changed}, (owner, action))
            self.assertEqual(d.state["locks"][1], expected)

    def test_sorted_and_order(self):
        r = self.d.apply(lock("a", (3, "O"), (1, "O"), (2, "U")))
        self.assertEqual(r["changed"], [{"output": 1, "owner": "a"}, {"output": 3, "owner": "a"}])
        self.err(lock("b", (0, "O"), (1, "O")), "locked")
        self.assertEqual(self.d.state["locks"][0], None)
        self.err(lock("b", (4, "O")), "out_of_range")
        self.err(lock("b", (1, "F"), (1, "F")), "duplicate")
        self.err(lock("b", (1, "O"), (1, "F")), "locked")

    def test_shape(self):
        for action in ("o", "L", "", "OU", None, 0, ["O"]):
            self.err({"op": "lock", "client": "a", "locks": [{"output": 0, "action": action}]},
                     "bad_request")
        self.err({"op": "lock", "client": "a", "locks": [{"output": 0}]}, "bad_request")
        self.err({"op": "lock", "client": "a", "locks": [{"output": False, "action": "O"}]},
                 "bad_request")
        self.err({"op": "lock", "client": "a", "locks": []}, "bad_request")
        self.err({"op": "lock", "locks": [{"output": 0, "action": "O"}]}, "bad_request")


class TestSalvos(DomainCase):

    def test_define_fire_delete(self):
        r = self.d.apply(define("a", "news", (3, 1), (0, 2)))
        self.assertEqual(r, {"ok": True, "name": "news", "size": 2})
        self.assertEqual(self.d.state["salvos"]["news"],
                         [{"output": 0, "input": 2}, {"output": 3, "input": 1}])
        self.assertEqual(self.d.state["routes"], [0, 1, 2, 3])   # define does not route
        r = self.d.apply(fire("b", "news"))
        self.assertEqual(r, {"ok": True, "changed": [{"output": 0, "input": 2},
                                                     {"output": 3, "input": 1}]})
        self.assertEqual(self.d.apply(fire("b", "news")), {"ok": True, "changed": []})
        self.assertEqual(self.d.apply(delete("c", "news")), {"ok": True, "name": "news"})
        self.err(fire("b", "news"), "not_found")
        self.err(delete("b", "news"), "not_found")

    def test_redefine_replaces(self):
        self.d.apply(define("a", "s", (0, 1)))
        self.assertEqual(self.d.apply(define("b", "s", (1, 0), (2, 0)))["size"], 2)
        self.assertEqual(self.d.state["salvos"]["s"],
                         [{"output": 1, "input": 0}, {"output": 2, "input": 0}])

    def test_define_checks_not_locks(self):
        self.d.apply(lock("x", (0, "O")))
        self.assertTrue(self.d.apply(define("a", "s", (0, 1)))["ok"])
        self.err(fire("a", "s"), "locked")
        self.assertTrue(self.d.apply(fire("x", "s"))["ok"])
        self.assertEqual(self.d.state["routes"][0], 1)

    def test_define_errors(self):
        self.err(define("a", "s", (4, 0)), "out_of_range")
        self.err(define("a", "s", (0, 4)), "out_of_range")
        self.err(define("a", "s", (0, 0), (0, 1)), "duplicate")
        self.err(define("a", "s", (0, 0), (0, 1), (9, 9)), "duplicate")
        for name in ("", "x" * 33, "\u00e9" * 17, "a\nb", "\x7f", 3, None):
            self.err({"op": "salvo_define", "client": "a", "name": name,
                      "routes": [{"output": 0, "input": 0}]}, "bad_request")
            self.err({"op": "salvo_fire", "client": "a", "name": name}, "bad_request")
            self.err({"op": "salvo_delete", "client": "a", "name": name}, "bad_request")
        self.assertTrue(self.d.apply(define("a", "x" * 32, (0, 0)))["ok"])
        self.assertTrue(self.d.apply(define("a", "\u00e9" * 16, (0, 0)))["ok"])
        self.err({"op": "salvo_define", "client": "a", "name": "s", "routes": []}, "bad_request")
        self.err({"op": "salvo_define", "client": "a", "name": "s"}, "bad_request")
        self.err({"op": "salvo_fire", "client": "a", "name": "s", "routes": []}, "bad_request")
        self.err({"op": "salvo_delete", "name": "s"}, "bad_request")
        self.err({"op": "salvo_fire", "client": "a"}, "bad_request")

    def test_full(self):
        for k in range(64):
            self.assertTrue(self.d.apply(define("a", "s%02d" % k, (0, 1)))["ok"])
        self.err(define("a", "new", (0, 1)), "full")
        # range/duplicate errors come before full
        self.err(define("a", "new", (9, 1)), "out_of_range")
        self.err(define("a", "new", (0, 1), (0, 1)), "duplicate")
        # redefining an existing name is never full
        self.assertEqual(self.d.apply(define("a", "s05", (1, 1)))["size"], 1)
        self.assertTrue(self.d.apply(delete("a", "s00"))["ok"])
        self.assertTrue(self.d.apply(define("a", "new", (0, 1)))["ok"])
        self.assertEqual(len(self.d.state["salvos"]), 64)

    def test_fire_uses_stored_order_and_locks(self):
        self.d.apply(define("a", "s", (2, 0), (1, 0)))
        self.d.apply(lock("z", (2, "O")))
        self.err(fire("a", "s"), "locked")
        self.assertEqual(self.d.state["routes"], [0, 1, 2, 3])


class TestValidationOrder(DomainCase):

    def test_query_rules(self):
        self.err([1], "bad_request", query=True)
        self.err({"op": 5}, "bad_request", query=True)
        self.err({}, "bad_request", query=True)
        self.err({"op": "nope"}, "unknown_op", query=True)
        for op in ("route", "label", "lock", "salvo_define", "salvo_fire", "salvo_delete"):
            # not_a_query comes before any shape check
            self.err({"op": op}, "not_a_query", query=True)
            self.err({"op": op, "junk": [1, 2]}, "not_a_query", query=True)
        self.err({"op": "dump", "client": "a"}, "bad_request", query=True)
        r = self.d.query({"op": "dump"})
        self.assertEqual(r, {"ok": True, "state": json.loads(rc.canonical_bytes(self.d.state))})

    def test_dump_in_apply(self):
        self.assertEqual(self.d.apply({"op": "dump"})["state"]["routes"], [0, 1, 2, 3])
        self.err({"op": "dump", "x": None}, "bad_request")

    def test_top_level(self):
        for cmd in (None, 1, "route", [], True, rc.RawNumber("1.5")):
            self.err(cmd, "bad_request")
        self.err({"client": "a"}, "bad_request")
        self.err({"op": None}, "bad_request")
        self.err({"op": ["route"]}, "bad_request")
        self.err({"op": "ROUTE"}, "unknown_op")
        self.err({"op": "explode", "client": 5}, "unknown_op")

    def test_semantic_uses_state_before_command(self):
        # lock then route in one command is impossible; but a lock command
        # unlocking and relocking the same output is refused as duplicate
        self.err(lock("a", (0, "O"), (0, "U")), "duplicate")


# ---------------------------------------------------------------------------
# restore
# ---------------------------------------------------------------------------

def good_state():
    return {"inputs": 2, "outputs": 3, "routes": [1, 0, 1],
            "input_labels": ["A", "\u00e9" * 32], "output_labels": ["", "x", "y"],
            "locks": [None, "p" * 64, None],
            "salvos": [{"name": "a", "routes": [{"output": 0, "input": 1}, {"output": 2, "input": 0}]},
                       {"name": "b", "routes": [{"output": 1, "input": 1}]}]}


class TestRestore(unittest.TestCase):

    def test_roundtrip_and_member_order(self):
        st = rc.state_from_canonical(good_state())
        data = rc.canonical_bytes(st)
        self.assertEqual(json.loads(data), good_state())
        # member order inside received objects does not matter
        shuffled = good_state()
        shuffled = dict(reversed(list(shuffled.items())))
        shuffled["salvos"] = [{"routes": [dict(reversed(list(r.items()))) for r in s["routes"]],
                               "name": s["name"]} for s in shuffled["salvos"]]
        self.assertEqual(rc.canonical_bytes(rc.state_from_canonical(shuffled)), data)

    def test_invalid_states(self):
        def mod(fn):
            s = good_state()
            fn(s)
            return s
        cases = [
            None, [], "x",
            mod(lambda s: s.pop("salvos")),
            mod(lambda s: s.update(extra=1)),
            mod(lambda s: s.update(inputs=0)),
            mod(lambda s: s.update(inputs=1025)),
            mod(lambda s: s.update(inputs=True)),
            mod(lambda s: s.update(inputs=rc.RawNumber("2.0"))),
            mod(lambda s: s.update(outputs=2)),
            mod(lambda s: s.update(routes=[1, 0, 2])),
            mod(lambda s: s.update(routes=[1, 0, -1])),
            mod(lambda s: s.update(routes=[1, 0, True])),
            mod(lambda s: s.update(routes=[1, 0])),
            mod(lambda s: s.update(routes=None)),
            mod(lambda s: s.update(input_labels=["A"])),
            mod(lambda s: s.update(input_labels=["A", "x" * 65])),
            mod(lambda s: s.update(input_labels=["A", "a\nb"])),
            mod(lambda s: s.update(input_labels=["A", None])),
            mod(lambda s: s.update(output_labels=["", "x", 3])),
            mod(lambda s: s.update(locks=[None, None])),
            mod(lambda s: s.update(locks=[None, "", None])),
            mod(lambda s: s.update(locks=[None, "p" * 65, None])),
            mod(lambda s: s.update(locks=[None, "a\x7f", None])),
            mod(lambda s: s.update(locks=[None, False, None])),
            mod(lambda s: s.update(salvos={})),
            mod(lambda s: s.update(salvos=[{"name": "s%02d" % k, "routes": [{"output": 0, "input": 0}]}
                                           for k in range(65)])),
            mod(lambda s: s["salvos"].reverse()),
            mod(lambda s: s["salvos"][1].update(name="a")),
            mod(lambda s: s["salvos"][0].update(name="")),
            mod(lambda s: s["salvos"][0].update(name="x" * 33)),
            mod(lambda s: s["salvos"][0].update(name=1)),
            mod(lambda s: s["salvos"][0].update(extra=1)),
            mod(lambda s: s["salvos"][0].pop("routes")),
            mod(lambda s: s["salvos"][0].update(routes=[])),
            mod(lambda s: s["salvos"][0]["routes"].reverse()),
            mod(lambda s: s["salvos"][0]["routes"].append({"output": 2, "input": 0})),
            mod(lambda s: s["salvos"][0]["routes"][0].update(output=3)),
            mod(lambda s: s["salvos"][0]["routes"][0].update(input=2)),
            mod(lambda s: s["salvos"][0]["routes"][0].update(input=-1)),
            mod(lambda s: s["salvos"][0]["routes"][0].update(extra=1)),
            mod(lambda s: s["salvos"][0]["routes"][0].pop("input")),
            mod(lambda s: s["salvos"][0]["routes"].__setitem__(0, [0, 1])),
        ]
        for i, case in enumerate(cases):
            with self.assertRaises(rc.BadState, msg="case %d" % i):
                rc.state_from_canonical(case)

    def test_64_salvos_and_limits_ok(self):
        s = good_state()
        s["salvos"] = [{"name": "s%02d" % k, "routes": [{"output": 0, "input": 0}]} for k in range(64)]
        rc.state_from_canonical(s)
        st = rc.initial_state(1024, 1024)
        big = json.loads(rc.canonical_bytes(st))
        big["salvos"] = [{"name": "z", "routes": [{"output": o, "input": o} for o in range(1024)]}]
        self.assertEqual(len(rc.state_from_canonical(big)["salvos"]["z"]), 1024)

    def test_salvo_name_order_is_bytewise(self):
        s = good_state()
        s["salvos"] = [{"name": n, "routes": [{"output": 0, "input": 0}]}
                       for n in ("B", "a", "ab", "\u00e9", "\uffff", "\U00010000")]
        rc.state_from_canonical(s)
        s["salvos"][0], s["salvos"][1] = s["salvos"][1], s["salvos"][0]
        with self.assertRaises(rc.BadState):
            rc.state_from_canonical(s)


# ---------------------------------------------------------------------------
# protocol engine (in-process)
# ---------------------------------------------------------------------------

class TestProtocol(unittest.TestCase):

    def setUp(self):
        self.c = rc.Controller(4, 4)

    def error(self, body, code, seq=None):
        r = reply(self.c, body)
        self.assertEqual(r["type"], "error", r)
        self.assertEqual(r["code"], code, (body, r))
        self.assertEqual(r["seq"], seq, (body, r))
        self.assertIsInstance(r["reason"], str)
        self.assertEqual(set(r), {"type", "seq", "code", "reason"})
        return r

    def test_requests(self):
        self.assertEqual(reply(self.c, {"type": "ping", "seq": 0}), {"type": "pong", "seq": 0})
        r = reply(self.c, {"type": "apply", "seq": 5, "time_ns": 17,
                           "cmd": route("a", (0, 3))})
        self.assertEqual(r, {"type": "applied", "seq": 5,
                             "result": {"ok": True, "changed": [{"output": 0, "input": 3}]}})
        r = reply(self.c, {"type": "apply", "seq": 6, "time_ns": 17, "cmd": {"op": "zap"}})
        self.assertEqual(r["type"], "applied")
        self.assertEqual(r["result"]["error"], "unknown_op")
        r = reply(self.c, {"type": "query", "seq": 7, "query": {"op": "dump"}})
        self.assertEqual(r["type"], "answer")
        self.assertEqual(r["result"]["state"]["routes"], [3, 1, 2, 3])
        r = reply(self.c, {"type": "query", "seq": 8, "query": route("a", (0, 0))})
        self.assertEqual(r["result"]["error"], "not_a_query")
        self.assertEqual(self.c.state["routes"][0], 3)
        d = reply(self.c, {"type": "digest", "seq": 9})
        self.assertEqual(d, {"type": "digest", "seq": 9, "digest": rc.state_digest(self.c.state)})
        line, _ = self.c.handle(b'{"type":"snapshot","seq":10}')
        canon = rc.canonical_bytes(self.c.state)
        self.assertEqual(line, b'{"type":"state","seq":10,"state":' + canon +
                         b',"digest":"' + d["digest"].encode() + b'"}\n')
        self.assertEqual(reply(self.c, {"type": "ping", "seq": 2 ** 63 - 1})["seq"], 2 ** 63 - 1)

    def test_restore(self):
        r = reply(self.c, {"type": "restore", "seq": 3, "state": good_state()})
        canon = rc.canonical_bytes(rc.state_from_canonical(good_state()))
        self.assertEqual(r, {"type": "restored", "seq": 3, "digest": rc.digest_hex(canon)})
        self.assertEqual(reply(self.c, {"type": "digest", "seq": 4})["digest"], r["digest"])
        # the command-line size no longer matters
        r = reply(self.c, {"type": "apply", "seq": 5, "time_ns": 0, "cmd": route("q", (3, 0))})
        self.assertEqual(r["result"]["error"], "out_of_range")
        before = rc.canonical_bytes(self.c.state)
        bad = good_state()
        bad["routes"] = [5, 5, 5]
        self.error({"type": "restore", "seq": 6, "state": bad}, "bad_state", 6)
        self.error({"type": "restore", "seq": 7, "state": None}, "bad_state", 7)
        self.assertEqual(rc.canonical_bytes(self.c.state), before)
        self.error({"type": "restore", "seq": 8}, "malformed", 8)

    def test_restore_then_commands(self):
        reply(self.c, {"type": "restore", "seq": 1, "state": good_state()})
        r = reply(self.c, {"type": "apply", "seq": 2, "time_ns": 0, "cmd": fire("p" * 64, "a")})
        self.assertEqual(r["result"], {"ok": True, "changed": [{"output": 2, "input": 0}]})
        r = reply(self.c, {"type": "apply", "seq": 3, "time_ns": 0, "cmd": fire("q", "b")})
        self.assertEqual(r["result"]["error"], "locked")

    def test_digest_cache_invalidated(self):
        d1 = reply(self.c, {"type": "digest", "seq": 1})["digest"]
        reply(self.c, {"type": "apply", "seq": 2, "time_ns": 0, "cmd": label("a", "input", (0, "x"))})
        d2 = reply(self.c, {"type": "digest", "seq": 3})["digest"]
        self.assertNotEqual(d1, d2)
        self.assertEqual(d2, rc.state_digest(self.c.state))
        reply(self.c, {"type": "apply", "seq": 4, "time_ns": 0, "cmd": route("a", (0, 0))})
        self.assertEqual(reply(self.c, {"type": "digest", "seq": 5})["digest"], d2)

    def test_malformed(self):
        for body in (b"", b"garbage", b"[1,2]", b'"x"', b"null", b'{"type":"ping","seq":1',
                     b'{"type":"ping","seq":1,"seq":2}', b'{"type":"ping","seq":NaN}',
                     b'{"type":"ping","seq":1,"x":"\\ud800"}', b'{"type":"ping","seq":1,"x":Infinity}',
                     b'{"type":"ping","seq":1,"x":' + b"[" * 64 + b"]" * 64 + b"}"):
            self.error(body, "malformed", None)

    def test_exactly_one_json_text(self):
        ping = b'{"type":"ping","seq":1}'
        for body in (b"\xef\xbb\xbf" + ping, ping + b"\x00", b"\x00" + ping, ping + ping,
                     ping + b" 2", ping + b"\x0b", ping + b"\x0c", ping + b"\xc2\xa0",
                     b"\xc2\xa0" + ping):
            self.error(body, "malformed", None)
        self.assertEqual(reply(self.c, b" \t\r\n" + ping + b"\r\n\t "), {"type": "pong", "seq": 1})

    def test_depth_64_taken_65_malformed(self):
        # the message object is level 1 (PROTOCOL.md §7)
        msg = b'{"type":"apply","seq":1,"time_ns":0,"cmd":{"op":"x","a":%s}}'
        r = reply(self.c, msg % (b"[" * 62 + b"]" * 62))               # 64 levels
        self.assertEqual((r["type"], r["result"]["error"]), ("applied", "unknown_op"))
        self.error(msg % (b"[" * 63 + b"]" * 63), "malformed", None)  # 65 levels

    def test_invalid_utf8(self):
        for body in (b'{"type":"ping","seq":1,"x":"\xff"}', b'{"type":"ping","seq":1,"x":"\xc0\xaf"}',
                     b'{"type":"ping","seq":1,"x":"\xed\xa0\x80"}', b'{"type":"ping","seq":1,"x":"\xe2\x82"}',
                     b'{"type":"ping","seq":1,"x":"\xf4\x90\x80\x80"}', b"\x80"):
            self.error(body, "malformed", None)
        self.assertEqual(reply(self.c, '{"type":"ping","seq":1,"x":"\u00fc\U0001F600"}'.encode()),
                         {"type": "pong", "seq": 1})

    def test_type_and_members(self):
        self.error({"seq": 1}, "malformed", 1)
        self.error({"type": 5, "seq": 1}, "malformed", 1)
        self.error({"type": None, "seq": 1}, "malformed", 1)
        self.error({"type": "frobnicate", "seq": 3}, "unknown_type", 3)
        self.error({"type": "hello", "seq": 3}, "unknown_type", 3)
        self.error({"type": "Ping", "seq": 3}, "unknown_type", 3)
        self.error({"type": "frobnicate"}, "unknown_type", None)
        self.error({"type": "frobnicate", "seq": -1}, "unknown_type", None)
        for seq in (-1, 1.5, 2 ** 63, True, "1", None, [1]):
            self.error({"type": "ping", "seq": seq}, "malformed", None)
        self.error(b'{"type":"ping","seq":1.0}', "malformed", None)
        self.error(b'{"type":"ping","seq":1e2}', "malformed", None)
        self.error(b'{"type":"ping","seq":-0.0}', "malformed", None)
        self.error(b'{"type":"ping","seq":9223372036854775808}', "malformed", None)
        self.error({"type": "ping"}, "malformed", None)
        self.error({"type": "apply", "seq": 2, "cmd": {"op": "dump"}}, "malformed", 2)
        for t in (-1, 2 ** 63, 1.5, False, "0", None):
            self.error({"type": "apply", "seq": 2, "time_ns": t, "cmd": {"op": "dump"}}, "malformed", 2)
        self.error({"type": "apply", "seq": 2, "time_ns": 0}, "malformed", 2)
        self.error({"type": "query", "seq": 2}, "malformed", 2)
        self.error({"type": "query", "seq": 2, "cmd": {"op": "dump"}}, "malformed", 2)
        # cmd null is present: a domain rejection, not a protocol error
        r = reply(self.c, {"type": "apply", "seq": 2, "time_ns": 0, "cmd": None})
        self.assertEqual(r["result"]["error"], "bad_request")
        # unknown members are ignored
        self.assertEqual(reply(self.c, {"type": "ping", "seq": 4, "x": [1, {"y": 2.5}]}),
                         {"type": "pong", "seq": 4})
        self.assertEqual(reply(self.c, {"type": "query", "seq": 4, "time_ns": "x",
                                        "query": {"op": "dump"}})["type"], "answer")

    def test_too_large(self):
        body = b'{"type":"ping","seq":1,"p":"' + b"x" * rc.MAX_MESSAGE + b'"}'
        self.error(body, "too_large", None)
        body = b"\xff" * (rc.MAX_MESSAGE + 1)
        self.error(body, "too_large", None)
        pad = rc.MAX_MESSAGE - len(b'{"type":"ping","seq":1,"p":""}')
        body = b'{"type":"ping","seq":1,"p":"' + b"x" * pad + b'"}'
        self.assertEqual(len(body), rc.MAX_MESSAGE)
        self.assertEqual(reply(self.c, body), {"type": "pong", "seq": 1})


class TestFaultsInProcess(unittest.TestCase):

    def apply_msg(self, seq, cmd):
        return wire({"type": "apply", "seq": seq, "time_ns": 1, "cmd": cmd})

    def test_parse_fault(self):
        self.assertEqual(rc.parse_fault("crash-on=abc=d"), ("crash", "abc=d"))
        self.assertEqual(rc.parse_fault("wrong-on="), ("wrong", ""))
        for bad in ("crash", "crash-on", "boom-on=x", "crash=x", "-on=x"):
            with self.assertRaises(ValueError):
                rc.parse_fault(bad)

    def test_deadly_faults_return_actions(self):
        c = rc.Controller(4, 4, [("exit", "EXIT"), ("crash", "CRASH"), ("abort", "ABORT"),
                                 ("hang", "HANG"), ("crash", "EXIT")])
        for word, action in (("EXIT", "exit"), ("CRASH", "crash"), ("ABORT", "abort"), ("HANG", "hang")):
            line, act = c.handle(self.apply_msg(1, label("a", "input", (0, word))))
            self.assertIsNone(line)
            self.assertEqual(act, action)
        self.assertEqual(c.state["input_labels"][0], "Input 1")
        line, act = c.handle(wire({"type": "query", "seq": 1, "query": {"op": "dump", "HANG": 1}}))
        self.assertEqual(act, "hang")
        # faults only look at cmd/query, not at other members
        line, act = c.handle(wire({"type": "ping", "seq": 1, "x": "CRASH"}))
        self.assertIsNone(act)
        line, act = c.handle(wire({"type": "apply", "seq": 1, "time_ns": 0, "x": "CRASH",
                                   "cmd": {"op": "dump"}}))
        self.assertIsNone(act)

    def test_wrong(self):
        c = rc.Controller(4, 4, [("wrong", "WRONG")])
        r = reply(c, self.apply_msg(1, label("a", "input", (0, "WRONG"))))
        self.assertEqual(r, {"type": "applied", "seq": 1, "result": {"ok": True, "fault": "wrong"}})
        self.assertEqual(c.state["input_labels"][0], "WRONG")   # applied normally
        r = reply(c, wire({"type": "query", "seq": 2, "query": {"op": "WRONG"}}))
        self.assertEqual(r, {"type": "answer", "seq": 2, "result": {"ok": True, "fault": "wrong"}})

    def test_corrupt(self):
        c = rc.Controller(4, 4, [("corrupt", "CORRUPT")])
        ref = rc.Controller(4, 4)
        cmd = route("a", (1, 3))
        cmd["client"] = "CORRUPT"
        r1 = reply(c, self.apply_msg(1, cmd))
        r2 = reply(ref, self.apply_msg(1, cmd))
        self.assertEqual(r1, r2)
        self.assertEqual(c.state["routes"], [1, 3, 2, 3])
        self.assertNotEqual(reply(c, {"type": "digest", "seq": 2}),
                            reply(ref, {"type": "digest", "seq": 2}))
        # fires on every matching command, wrapping mod inputs
        for _ in range(3):
            reply(c, self.apply_msg(3, cmd))
        self.assertEqual(c.state["routes"][0], 0)

    def test_first_matching_fault_wins(self):
        c = rc.Controller(4, 4, [("wrong", "zz"), ("corrupt", "a"), ("crash", "a")])
        r = reply(c, self.apply_msg(1, route("a", (1, 1))))
        self.assertEqual(r["result"], {"ok": True, "changed": []})
        self.assertEqual(c.state["routes"][0], 1)

    def test_received_log(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "log")
            with open(path, "ab") as log:
                c = rc.Controller(4, 4, [], log, "router-c.3")
                msgs = [b'{"type":"apply", "seq":1,"time_ns":2,"cmd":{"op":"route","client":"\xc3\xbc",'
                        b'"routes":[{"output":0,"input":1.50}]}}',
                        b'{"type":"query","seq":2,"query":{"op":"dump"}}',
                        b'{"type":"ping","seq":3}',
                        b'{"type":"digest","seq":4}',
                        b'garbage',
                        b'{"type":"apply","seq":5}']
                for m in msgs:
                    c.handle(m)
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
        self.assertEqual(lines, [
            b'{"type":"apply","seq":1,"time_ns":2,"cmd":{"op":"route","client":"\xc3\xbc",'
            b'"routes":[{"output":0,"input":1.50}]},"received_by":"router-c.3"}',
            b'{"type":"query","seq":2,"query":{"op":"dump"},"received_by":"router-c.3"}',
            b'{"type":"apply","seq":5,"received_by":"router-c.3"}',
            b""])

    def test_received_by(self):
        # "" when NVS_VARIANT is unset (the default); a "received_by" the
        # message brings along is replaced in the log, not duplicated, and the
        # message is processed as received
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "log")
            with open(path, "ab") as log:
                c = rc.Controller(4, 4, [("wrong", "spoof")], log)
                r = reply(c, b'{"type":"query","seq":1,"received_by":"spoof",'
                             b'"query":{"op":"dump"}}')
                self.assertEqual(r["type"], "answer")
                self.assertTrue(r["result"]["ok"])
                r = reply(c, wire({"type": "apply", "seq": 2, "time_ns": 0,
                                   "cmd": label("a", "input", (0, "spoof"))}))
                self.assertEqual(r["result"], {"ok": True, "fault": "wrong"})
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
        self.assertEqual(lines, [
            b'{"type":"query","seq":1,"query":{"op":"dump"},"received_by":""}',
            b'{"type":"apply","seq":2,"time_ns":0,"cmd":{"op":"label","client":"a","kind":"input",'
            b'"labels":[{"index":0,"text":"spoof"}]},"received_by":""}',
            b""])


class TestArgs(unittest.TestCase):

    def test_parse(self):
        self.assertEqual(rc.parse_args([]), {"inputs": 16, "outputs": 16, "faults": [],
                                             "received_log": None})
        c = rc.parse_args(["--inputs", "1024", "--outputs=1", "--fault", "crash-on=x",
                           "--fault=wrong-on=a=b", "--received-log", "/tmp/x"])
        self.assertEqual(c, {"inputs": 1024, "outputs": 1,
                             "faults": [("crash", "x"), ("wrong", "a=b")],
                             "received_log": "/tmp/x"})
        self.assertEqual(rc.parse_args(["--inputs", "007"])["inputs"], 7)

    def test_bad(self):
        for argv in (["--inputs", "0"], ["--inputs", "1025"], ["--outputs", "x"],
                     ["--outputs", "-1"], ["--inputs", ""], ["--inputs", "1.5"],
                     ["--inputs", " 4"], ["--inputs", "\u0664"], ["--inputs"],
                     ["--fault", "nope-on=x"], ["--fault"], ["--bogus"], ["extra"],
                     ["--received-log="], ["--inputs", "99999999999999999999"]):
            with self.assertRaises(rc.UsageError, msg=argv):
                rc.parse_args(argv)


# ---------------------------------------------------------------------------
# stdio loop (subprocess)
# ---------------------------------------------------------------------------

class Proc:
    """router_c.py as a child with pipes; every read has a deadline."""

    def __init__(self, *args, env=None):
        e = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        e.update(env or {})
        self.p = subprocess.Popen([sys.executable, SCRIPT] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=e)
        self.buf = b""

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def readline(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply within %ss" % timeout)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError("EOF on stdout; have %r" % self.buf)
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def silent_for(self, seconds):
        fd = self.p.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], seconds)
        return not ready

    def close_and_wait(self, timeout=TIMEOUT):
        self.p.stdin.close()
        rc_ = self.p.wait(timeout=timeout)
        rest = self.p.stdout.read()
        return rc_, rest

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=TIMEOUT)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass


def run(args, data, timeout=TIMEOUT, env=None):
    e = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    e.update(env or {})
    p = subprocess.run([sys.executable, SCRIPT] + list(args), input=data,
                       capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.split(b"\n"), p.stderr


class TestStdio(unittest.TestCase):

    def proc(self, *args, **kw):
        p = Proc(*args, **kw)
        self.addCleanup(p.kill)
        return p

    def test_session(self):
        p = self.proc("--inputs", "4", "--outputs", "4", env={"NVS_VARIANT": "router-c.7"})
        hello = json.loads(p.readline())
        self.assertEqual(hello, {"type": "hello", "protocol": 1, "variant": "router-c.7",
                                 "impl": rc.IMPL})
        p.send(b'{"type":"apply","seq":2,"time_ns":1764151200000000000,"cmd":{"op":"route",'
               b'"client":"panel-1","routes":[{"output":0,"input":3}]}}\n')
        self.assertEqual(json.loads(p.readline()),
                         {"type": "applied", "seq": 2,
                          "result": {"ok": True, "changed": [{"output": 0, "input": 3}]}})
        p.send(b"this is not json\n")
        self.assertEqual(json.loads(p.readline())["code"], "malformed")
        p.send(b'{"type":"ping","seq":1,"x":"\xff\xfe"}\n')
        r = json.loads(p.readline())
        self.assertEqual((r["code"], r["seq"]), ("malformed", None))
        p.send(b'{"type":"frobnicate","seq":3}\n')
        r = json.loads(p.readline())
        self.assertEqual((r["type"], r["seq"], r["code"]), ("error", 3, "unknown_type"))
        p.send(b'{"type":"ping","seq":4}\n')
        self.assertEqual(p.readline(), b'{"type":"pong","seq":4}')
        code, rest = p.close_and_wait()
        self.assertEqual(code, 0)
        self.assertEqual(rest, b"")

    def test_pipelined_and_unset_variant(self):
        env = dict(os.environ)
        env.pop("NVS_VARIANT", None)
        lines = [b'{"type":"ping","seq":%d}' % i for i in range(200)]
        lines.insert(100, b"")            # an empty line is a malformed message
        data = b"\n".join(lines) + b'\n{"type":"digest","seq":7}'   # last line without LF
        p = subprocess.run([sys.executable, SCRIPT, "--inputs=1", "--outputs=1"], input=data,
                           capture_output=True, timeout=TIMEOUT, env=env)
        self.assertEqual(p.returncode, 0)
        out = p.stdout.split(b"\n")
        self.assertEqual(json.loads(out[0])["variant"], "")
        self.assertEqual(out[1], b'{"type":"pong","seq":0}')
        self.assertEqual(json.loads(out[101])["code"], "malformed")
        self.assertEqual(out[201], b'{"type":"pong","seq":199}')
        self.assertEqual(json.loads(out[202])["digest"],
                         rc.state_digest(rc.initial_state(1, 1)))
        self.assertEqual(out[203:], [b""])

    def test_too_large_line_is_skipped(self):
        big = b'{"type":"ping","seq":1,"p":"' + b"x" * (rc.MAX_MESSAGE + 10) + b'"}\n'
        pad = rc.MAX_MESSAGE - len(b'{"type":"ping","seq":3,"p":""}')
        exact = b'{"type":"ping","seq":3,"p":"' + b"y" * pad + b'"}\n'
        code, out, _ = run([], big + b'{"type":"ping","seq":2}\n' + exact)
        self.assertEqual(code, 0)
        err = json.loads(out[1])
        self.assertEqual((err["type"], err["code"], err["seq"]), ("error", "too_large", None))
        self.assertEqual(out[2], b'{"type":"pong","seq":2}')
        self.assertEqual(out[3], b'{"type":"pong","seq":3}')

    def test_bad_options_exit_2(self):
        for args in (["--inputs", "0"], ["--outputs", "abc"], ["--inputs", "1025"],
                     ["--fault", "melt-on=x"], ["--frob"]):
            code, out, err = run(args, b"")
            self.assertEqual(code, 2, args)
            self.assertEqual(out, [b""], args)
            self.assertIn(b"router_c", err)

    def test_crash_abort_exit(self):
        msg = b'{"type":"apply","seq":1,"time_ns":0,"cmd":{"op":"label","client":"a",' \
              b'"kind":"input","labels":[{"index":0,"text":"%s"}]}}\n'
        faults = ["--fault", "crash-on=CRASHME", "--fault", "abort-on=ABORTME",
                  "--fault", "exit-on=EXITME"]
        for word, expected in ((b"CRASHME", -signal.SIGSEGV), (b"ABORTME", -signal.SIGABRT),
                               (b"EXITME", 3)):
            with tempfile.TemporaryDirectory() as tmp:
                log = os.path.join(tmp, "received.log")
                code, out, _ = run(faults + ["--received-log", log],
                                   b'{"type":"ping","seq":0}\n' + msg % word +
                                   b'{"type":"ping","seq":2}\n',
                                   env={"NVS_VARIANT": "router-c.4"})
                self.assertEqual(code, expected, word)
                self.assertEqual(out[1], b'{"type":"pong","seq":0}')
                self.assertEqual(out[2:], [b""])         # no reply to the fatal command
                with open(log, "rb") as f:               # logged before dying
                    self.assertEqual(f.read(), (msg % word)[:-2] +
                                     b',"received_by":"router-c.4"}\n')

    def test_received_log_received_by(self):
        msgs = (b'{"type":"query","seq":1,"query":{"op":"dump"}}\n'
                b'{"type":"ping","seq":2}\n'
                b' {"type" : "apply","seq":3,"time_ns":0,"cmd":{"op":"dump"}} \r\n')
        logged = (b'{"type":"query","seq":1,"query":{"op":"dump"},"received_by":%s}\n'
                  b'{"type":"apply","seq":3,"time_ns":0,"cmd":{"op":"dump"},"received_by":%s}\n')
        for name, expected in (("probe.2", b'"probe.2"'), (None, b'""')):
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
            env.pop("NVS_VARIANT", None)
            if name is not None:
                env["NVS_VARIANT"] = name
            with tempfile.TemporaryDirectory() as tmp:
                log = os.path.join(tmp, "received.log")
                with open(log, "wb") as f:
                    f.write(b"earlier\n")               # the log is appended to
                p = subprocess.run([sys.executable, SCRIPT, "--received-log", log], input=msgs,
                                   capture_output=True, timeout=TIMEOUT, env=env)
                self.assertEqual(p.returncode, 0, name)
                self.assertEqual(len(p.stdout.split(b"\n")), 5, name)
                with open(log, "rb") as f:
                    self.assertEqual(f.read(), b"earlier\n" + logged % (expected, expected), name)

    def test_hang(self):
        p = self.proc("--fault", "hang-on=HANGME")
        p.readline()
        p.send(b'{"type":"ping","seq":1}\n')
        self.assertEqual(p.readline(), b'{"type":"pong","seq":1}')
        p.send(b'{"type":"query","seq":2,"query":{"op":"dump","x":"HANGME"}}\n'
               b'{"type":"ping","seq":3}\n')
        p.p.stdin.close()                                 # EOF must not end a hung variant
        self.assertTrue(p.silent_for(0.5))
        with self.assertRaises(subprocess.TimeoutExpired):
            p.p.wait(timeout=0.2)
        p.p.terminate()
        self.assertEqual(p.p.wait(timeout=TIMEOUT), -signal.SIGTERM)

    def test_sigterm_while_idle(self):
        p = self.proc()
        p.readline()
        p.p.terminate()
        self.assertEqual(p.p.wait(timeout=TIMEOUT), -signal.SIGTERM)

    def test_wrong_and_corrupt_over_stdio(self):
        code, out, _ = run(["--inputs", "2", "--outputs", "2", "--fault", "wrong-on=\"W\"",
                            "--fault", "corrupt-on=CC"],
                           b'{"type":"apply","seq":1,"time_ns":0,"cmd":{"op":"route","client":"W",'
                           b'"routes":[{"output":1,"input":0}]}}\n'
                           b'{"type":"apply","seq":2,"time_ns":0,"cmd":{"op":"route","client":"CC",'
                           b'"routes":[{"output":1,"input":1}]}}\n'
                           b'{"type":"query","seq":3,"query":{"op":"dump"}}\n')
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out[1])["result"], {"ok": True, "fault": "wrong"})
        self.assertEqual(json.loads(out[2])["result"],
                         {"ok": True, "changed": [{"output": 1, "input": 1}]})
        self.assertEqual(json.loads(out[3])["result"]["state"]["routes"], [1, 1])


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""A stdio variant that misbehaves on purpose, for nvsd's integration tests.

usage: misbehaving_variant.py [--MODE-on=SUBSTRING]... -- COMMAND [ARGS...]

It runs COMMAND (a well-behaved stdio variant) as its child and relays each
request line to it and each reply back, except that for a request line
(apply or query) containing SUBSTRING it does what MODE says instead of relaying the reply:

  garbage       write a line that is not JSON
  wrong-seq     write the reply with its seq changed
  unsolicited   write an unsolicited pong before the reply
  flood         write the reply 1000 times
  binary-crash  write bytes that are not UTF-8 to stderr, then die by SIGSEGV

and, whatever the substring, for a request of another type:

  --crash-on-type=TYPE:N   die by SIGSEGV on the N-th request of that type
                           (e.g. digest:3) this process receives
  --hang-on-type=TYPE:N    on the N-th request of that type, stop answering
                           anything (stay alive, like a SIGSTOPped process)
  --slow-ms=N              answer each apply N milliseconds late (a correct
                           but slow implementation)
  --slow-type=TYPE:N       answer each request of that type (e.g. ping) N
                           milliseconds late
  --eat-memory-on=S        on an apply containing S, allocate memory without
                           bound (until the variant's address-space limit
                           stops it)
  --grandchild             start a grandchild (sleep 600) at start, in the
                           variant's process group, that a careless
                           supervisor would leave behind
  --crash-after=A,B        die by SIGSEGV on an apply containing B once an
                           apply containing A was applied (a crash that needs
                           two commands in order, e.g. a label A then a
                           command B); a restore arms it when its state
                           contains A and disarms it otherwise, so the bug
                           lives in the state, as real ones do
"""
import json
import os
import signal
import subprocess
import sys
import time

MODES = ("garbage", "wrong-seq", "unsolicited", "flood", "binary-crash")


def die():
    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGSEGV)


def main(argv):
    if "--" not in argv:
        sys.stderr.write(__doc__)
        return 2
    split = argv.index("--")
    rules = []
    crash_types = []
    hang_types = []
    slow = 0.0
    slow_types = []
    crash_after = None
    eat_memory = None
    grandchild = None
    armed = False
    seen = {}
    for arg in argv[:split]:
        if arg.startswith("--eat-memory-on="):
            eat_memory = arg[len("--eat-memory-on="):]
            continue
        if arg == "--grandchild":
            grandchild = subprocess.Popen(["sleep", "600"])
            continue
        if arg.startswith("--crash-after="):
            first, _, second = arg[len("--crash-after="):].partition(",")
            crash_after = (first, second)
            continue
        if arg.startswith("--hang-on-type="):
            kind, _, nth = arg[len("--hang-on-type="):].partition(":")
            hang_types.append((kind, int(nth or "1")))
            continue
        if arg.startswith("--slow-ms="):
            slow = int(arg[len("--slow-ms="):]) / 1000.0
            continue
        if arg.startswith("--slow-type="):
            kind, _, ms = arg[len("--slow-type="):].partition(":")
            slow_types.append((kind, int(ms) / 1000.0))
            continue
        if arg.startswith("--crash-on-type="):
            kind, _, nth = arg[len("--crash-on-type="):].partition(":")
            crash_types.append((kind, int(nth or "1")))
            continue
        for mode in MODES:
            prefix = "--%s-on=" % mode
            if arg.startswith(prefix):
                rules.append((mode, arg[len(prefix):]))
                break
        else:
            sys.stderr.write("misbehaving_variant: unknown option %s\n" % arg)
            return 2
    child = subprocess.Popen(argv[split + 1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out = sys.stdout.buffer
    out.write(child.stdout.readline())  # hello
    out.flush()
    for line in sys.stdin.buffer:
        text = line.decode("utf-8", "replace")
        for kind, nth in crash_types:
            if '"type":"%s"' % kind in text:
                seen[kind] = seen.get(kind, 0) + 1
                if seen[kind] == nth:
                    die()
        for kind, nth in hang_types:
            if '"type":"%s"' % kind in text:
                seen["hang " + kind] = seen.get("hang " + kind, 0) + 1
                if seen["hang " + kind] == nth:
                    while True:  # alive, answering nothing, until killed
                        signal.pause()
        if slow and '"type":"apply"' in text:
            time.sleep(slow)
        for kind, late in slow_types:
            if '"type":"%s"' % kind in text:
                time.sleep(late)
        if eat_memory and '"type":"apply"' in text and eat_memory in text:
            hog = []
            while True:  # a MemoryError at the limit ends the process (status 1)
                hog.append(bytearray(16 << 20))
        if crash_after and '"type":"restore"' in text:
            armed = crash_after[0] in text
        if crash_after and '"type":"apply"' in text:
            if armed and crash_after[1] in text:
                die()
            if crash_after[0] in text:
                armed = True
        child.stdin.write(line)
        child.stdin.flush()
        reply = child.stdout.readline()
        if not reply:
            return 1
        is_command = '"type":"apply"' in text or '"type":"query"' in text
        mode = next((m for m, s in rules if s in text), None) if is_command else None
        if mode == "binary-crash":
            sys.stderr.buffer.write(b"about to die \xff\xfe\xc3 S\xc3\xbc\xc3")
            sys.stderr.buffer.flush()
            die()
        elif mode == "garbage":
            out.write(b"this is not json {\n")
        elif mode == "wrong-seq":
            message = json.loads(reply)
            message["seq"] = message.get("seq", 0) + 1000
            out.write(json.dumps(message).encode() + b"\n")
        elif mode == "unsolicited":
            out.write(b'{"type":"pong","seq":999999}\n' + reply)
        elif mode == "flood":
            out.write(reply * 1000)
        else:
            out.write(reply)
        out.flush()
    child.stdin.close()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

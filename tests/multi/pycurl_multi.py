#!/usr/bin/env python3
"""pycurl CurlMulti client for tests/integration/test_multi_hosts.c: an ordinary program
driving libcurl's multi interface with perform() + select(), as pycurl's documentation
shows. Never calls Curl.perform().

    pycurl_multi.py [--max N] [--cainfo FILE] [--hold-until FILE] URL...

Keeps at most N transfers added to the multi at once (0 = all at once; a new Curl object
for each URL, added when one finishes, as a pool of workers does). Prints one line per URL,
in argument order: "INDEX ok STATUS LENGTH FIRST-BYTES" or "INDEX error CURLCODE MESSAGE".
Exit 0 when every transfer got a 200, 1 otherwise, 2 when the 30 s deadline passed.
--hold-until FILE: after printing, wait (at most 10 s) until FILE exists before exiting, so
that the test can look at the live process (its metrics endpoint)."""
import io
import os
import sys
import time

import pycurl


def main():
    args = sys.argv[1:]
    limit, ca, hold = 0, None, None
    while args and args[0].startswith("--"):
        if args[0] == "--max":
            limit = int(args[1])
        elif args[0] == "--cainfo":
            ca = args[1]
        elif args[0] == "--hold-until":
            hold = args[1]
        else:
            print("unknown option " + args[0], file=sys.stderr)
            return 2
        args = args[2:]
    multi = pycurl.CurlMulti()
    todo = list(enumerate(args))
    results = {}
    active = 0

    def add(i, url):
        c = pycurl.Curl()
        c.idx, c.buf = i, io.BytesIO()
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.WRITEFUNCTION, c.buf.write)
        c.setopt(pycurl.NOSIGNAL, 1)
        if ca:
            c.setopt(pycurl.CAINFO, ca)
        multi.add_handle(c)

    deadline = time.monotonic() + 30
    while todo or active:
        while todo and (limit == 0 or active < limit):
            add(*todo.pop(0))
            active += 1
        if time.monotonic() > deadline:
            print("deadline passed with %d transfers running" % active)
            return 2
        while True:
            ret, _ = multi.perform()
            if ret != pycurl.E_CALL_MULTI_PERFORM:
                break
        while True:
            queued, ok, failed = multi.info_read()
            for c in ok:
                body = c.buf.getvalue()
                results[c.idx] = "ok %d %d %r" % (c.getinfo(pycurl.RESPONSE_CODE), len(body), body[:16])
                multi.remove_handle(c)
                c.close()
                active -= 1
            for c, code, msg in failed:
                results[c.idx] = "error %d %s" % (code, msg)
                multi.remove_handle(c)
                c.close()
                active -= 1
            if queued == 0:
                break
        if active and multi.select(0.5) == -1:
            time.sleep(0.01)  # nothing to wait on yet (libcurl's own timers)
    multi.close()
    bad = 0
    for i in range(len(args)):
        line = results.get(i, "missing")
        bad += not line.startswith("ok 200 ")
        print(i, line)
    sys.stdout.flush()
    until = time.monotonic() + 10
    while hold and not os.path.exists(hold) and time.monotonic() < until:
        time.sleep(0.02)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""CONSOLE log follow: the idle poll's shortcut (`logs.idle`) answers exactly as `logs.read`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ark_runtime.api import logs

AGENTS = ["kyle", "joey", "kenny"]
content = st.one_of(st.none(), st.just("dir"),
                    st.binary(max_size=60).map(lambda b: b.replace(b"\0", b"x")))


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({a: content for a in AGENTS}),
       st.dictionaries(st.sampled_from(AGENTS), st.one_of(st.integers(0, 70), st.just(-1)),
                       max_size=3),
       st.lists(st.sampled_from(AGENTS), min_size=1, max_size=3, unique=True))
def test_idle_answers_as_read_or_defers(files, cursor, chosen) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for agent, data in files.items():
            if data == "dir":
                os.mkdir(d / f"{agent}.log")
            elif data is not None:
                (d / f"{agent}.log").write_bytes(data)
        # -1: the exact size of the file now, the usual idle poll
        cur = {a: (len(files[a]) if isinstance(files[a], bytes) else 0) if v == -1 else v
               for a, v in cursor.items()}
        fast = logs.idle(chosen, cur, d)
        if fast is not None:
            assert fast == logs.read(chosen, None, 100, cur, d)
        idle_expected = bool(cur) and all(
            cur.get(a) == len(files[a]) for a in chosen if isinstance(files[a], bytes))
        assert (fast is not None) == idle_expected

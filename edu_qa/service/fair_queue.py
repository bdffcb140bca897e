"""The training queue, fair to a class: each key's jobs wait in their own queue, in the order
they came, and the keys take turns, so one student who creates ten jobs does not queue ahead
of everyone else.

Whose turn: the key served longest ago (a key never served before any other, the first to
come first). Its oldest job is the next one trained. Turns are numbered, and the worker keeps
each job's turn in its record, so that a restarted service serves the queued jobs in the same
order it would have; a job that was training when the service stopped is trained first."""

from __future__ import annotations

import itertools
import threading
from collections import deque


class FairQueue:
    def __init__(self, turns: dict[str, int] | None = None):
        """turns: each key's last turn (a restarted service's, from the jobs' records)."""
        self.turns = dict(turns or {})  # key -> the turn it was last served
        self.next_turn = itertools.count(max(self.turns.values(), default=0) + 1)
        self.arrivals = itertools.count()  # breaks ties between keys never served
        self.waiting: dict[str, deque] = {}  # key -> (arrival, job id), oldest first
        self.first: deque = deque()  # jobs that were training when the service stopped
        self.changed = threading.Condition()
        self.closed = False

    def put(self, owner: str, job_id: str, first: bool = False) -> None:
        """A job of owner's joins its queue; first: ahead of every queue (a job that was
        training when the service stopped)."""
        with self.changed:
            if first:
                self.first.append((owner, job_id))
            else:
                self.waiting.setdefault(owner, deque()).append((next(self.arrivals), job_id))
            self.changed.notify()

    def discard(self, job_id: str) -> None:
        """A cancelled job leaves its queue without using its key's turn."""
        with self.changed:
            self.first = deque(entry for entry in self.first if entry[1] != job_id)
            for jobs in self.waiting.values():
                for entry in [e for e in jobs if e[1] == job_id]:
                    jobs.remove(entry)

    def get(self) -> tuple[str, int] | None:
        """(the next job to train, its turn), waiting for one; None once closed."""
        with self.changed:
            self.changed.wait_for(lambda: self.closed or self.first or
                                  any(self.waiting.values()))
            if self.closed:
                return None
            if self.first:
                owner, job_id = self.first.popleft()
            else:
                owner = min((o for o, jobs in self.waiting.items() if jobs),
                            key=lambda o: (self.turns.get(o, 0), self.waiting[o][0][0]))
                job_id = self.waiting[owner].popleft()[1]
            self.turns[owner] = turn = next(self.next_turn)
            return job_id, turn

    def close(self) -> None:
        """get() answers None from now on (the service is stopping)."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()

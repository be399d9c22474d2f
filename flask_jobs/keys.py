"""Every Redis key flask-jobs uses, in one place.

``P`` is :data:`JOBS_KEY_PREFIX` followed by a colon (``jobs:`` by default).

=============================  =======  ==============================================================
key                            type     what it holds, and when it goes away
=============================  =======  ==============================================================
``P t:<id>``                   hash     The task record: ``state``, ``name``, ``queue``, ``prio``,
                                        ``ctype`` + ``body`` (the message, until a final state),
                                        ``att`` (delivery attempt, the fencing token), ``dlv``
                                        (deliveries since the last enqueue), ``worker``, ``rtype`` +
                                        ``result`` (result or meta), ``tb``, ``st`` (started),
                                        ``done``, ``upd``, ``exp``, ``owner``, ``reason``, ``rls``
                                        (the rate-limit slot it waits for), ``sus``
                                        (a suspect: held by a worker that died holding several
                                        tasks; claimed and run alone), ``ph`` (a placeholder for a
                                        chain's task: no message, expires like a result;
                                        taken over when the task is sent), ``group`` (the group
                                        it counts in), ``chain`` (the chain it is a step of),
                                        ``hdr`` (a chord body's header group), ``fwd`` (the task
                                        that replaced itself with this one: this one's outcome
                                        becomes its own), ``children`` (JSON ids of the callbacks
                                        it sent). Written at
                                        enqueue with no expiry (it holds the message while the task
                                        waits); expires :data:`JOBS_RESULT_EXPIRES` after its final
                                        state.
``P q:<queue>:<prio>``         list     Ready task ids of one queue and priority (0-9, 9 runs first).
                                        LPUSH at enqueue, RPOP at claim. Empty lists vanish.
``P wake:<queue>``             list     Wake-up token (at most one ``1``) pushed when ids are queued
                                        for a queue with nobody idle to hand them to, or given back;
                                        idle consumers block on it (BLPOP), so nobody polls.
``P idle:<queue>``             set      Idle consumers of the queue, ``<worker>|<slot>``. Added by a
                                        claim that found nothing; enqueue pops one and hands it the
                                        new task (already claimed) through its inbox.
``P w:<worker>:in:<slot>``     list     A consumer's inbox: claimed tasks handed over at enqueue
                                        (a header line ``<att> <dlv> <#id> <#ctype> <#name>``,
                                        then id, ctype, name and body). The idle consumer blocks
                                        on it with BLPOP (before the wake lists); its next claim
                                        takes what is left.
``P w:<worker>:idle``          set      The worker's idle registrations and inboxes, so the reaper
                                        and a clean shutdown remove them.
``P w:<worker>:claims``        hash     Per consumer, what its last claim returned (field ``<slot>``:
                                        JSON ``[seq, id, attempt, ...]``) and the task handed to it
                                        since (``<slot>:h``: id), so a claim sent again after a lost
                                        reply returns them again (``scripts/claim.lua``). Two small
                                        fields per consumer; deleted at clean shutdown or by the
                                        reaper.
``P g:<group>``                 list     Member task ids of a group, in order; expires with the records.
``P gc:<id>``                  hash     Counters of a group (``total``, ``done``, ``ok``, ``failed``,
                                        ``revoked``, ``fail``: the first to fail, ``owner``
                                        (``\\0mixed`` when the members' differ),
                                        ``upd``, ``at``: created, a chord's held ``body`` until its
                                        header is done) or of a chain (``total`` steps, ``done``,
                                        ``cur``: the step running, ``last``: its result's id,
                                        ``upd``, ``at``, ``owner``).
                                        Moved by the scripts that write final
                                        states, so a workflow's status is one read. Expires with
                                        the records.
``P dd:<key>``                 string   The task holding a dedup key (``apply_async(dedup_key=)``):
                                        its id, ``PX`` the dedup ttl.
``P delayed``                  zset     Ids of countdown/eta/retry tasks, scored by due time in
                                        Redis-server milliseconds. Moved to their queue by claims.
``P w:<worker>:active``        hash     Task id -> attempt, for each task a worker has claimed and not
                                        finished. Deleted at clean shutdown or by the reaper.
``P hb:<worker>``              string   Worker heartbeat, ``PX`` = orphan timeout. When it is gone the
                                        reaper gives the worker's tasks back. JSON: hostname, pid,
                                        pool, concurrency, prefetch, queues, started, task names
                                        (a prefork child's: hostname and pid only).
``P workers``                  set      Names of workers that may own active tasks.
``P rates``                    hash     Task name -> milliseconds between two runs, for tasks with a
                                        ``rate_limit`` (written by workers at start).
``P rl:<name>``                string   Rate limiter of a task name: the next free slot (Redis ms),
                                        ``PX`` a minute past it.
``P lock:reaper``              string   Mutex for the reaper (``SET NX PX``).
``P dlq``                      list     Dead letters: JSON ``{id, name, reason, at}``, capped.
``P stats``                    hash     Counters: ``expired``, ``dead``, ``stale_writes``, ``reaped``,
                                        ``purged``.
``P ev:<id>``                  channel  Pub/sub: the new state of a task, published on each change;
                                        of a group or chain id, each member's or step's progress.
``P control``                  channel  Pub/sub: broadcast commands to workers (revoke, ping).
``P events``                   stream   Task and worker events (:mod:`flask_jobs.events`), one entry
                                        per batch of a worker's writes: field ``w`` the worker,
                                        ``e`` one line per event, ``type<TAB>id<TAB>name<TAB>info``.
                                        Capped at :data:`JOBS_EVENTS_MAXLEN` entries and
                                        :data:`JOBS_EVENTS_MAX_AGE`; absent when events are off.
``P conf``                     hash     Settings the scripts read, written by each worker at start
                                        (the last wins): ``events`` (the stream's length, 0: off).
``P m:<name>``                 hash     Counters of one task name, for metrics: ``succeeded``,
                                        ``failed``, ``retried``, ``revoked``, ``expired``,
                                        ``dead``, runtime buckets ``b1``..``b15`` and ``rt`` (the
                                        runtimes' sum in ms). No expiry.
``P m:names``                  set      Task names that have counters.
``P reply:<id>``               list     Replies of workers to one broadcast that asks for them
                                        (``jobs.control.ping()``): JSON ``{worker name: answer}``
                                        each; ``PX`` 60 s, deleted by the caller when done.
``P beat:e:<name>``            hash     A periodic task (see :mod:`flask_jobs.beat`): ``def`` (JSON:
                                        task, schedule, args, kwargs, options, missed), ``src``
                                        (``config`` or ``api``), ``next`` (due time, Redis ms),
                                        ``last`` (when last sent), ``due`` (the due time it was sent
                                        for), ``total`` (runs sent), ``last_id`` (the last task's
                                        id), ``paused`` (``1`` when paused). No expiry.
``P beat:due``                 zset     Names of the enabled periodic tasks, scored by ``next``.
``P beat:names``               set      Names of every periodic task.
``P beat:leader``              string   The beat process that may send periodic tasks: its id, ``PX``
                                        :data:`JOBS_BEAT_LEASE` (renewed while it lives).
=============================  =======  ==============================================================

The Lua scripts in ``scripts/`` build the same names from the prefix (each also receives one of
them in ``KEYS``, for Redis Cluster routing); this table and the header of ``scripts/lib.lua``
must agree, and ``tests/test_keys.py`` checks that they do. All keys of a deployment share the
prefix, so a hash tag in the prefix (``JOBS_KEY_PREFIX = "{jobs}"``) puts them in one Redis
Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Priorities are 0-9; a higher number runs first. Tasks without one get this.
DEFAULT_PRIORITY = 5


@dataclass(frozen=True)
class Keys:
    """Key names for one prefix.

    :param prefix: the configured :data:`JOBS_KEY_PREFIX`, without the trailing colon.
    """

    prefix: str

    @property
    def base(self) -> str:
        """The prefix with its separator, as the Lua scripts receive it."""
        return f"{self.prefix}:"

    def task(self, task_id: str) -> str:
        """The task record hash."""
        return f"{self.prefix}:t:{task_id}"

    def queue(self, queue: str, priority: int = DEFAULT_PRIORITY) -> str:
        """The ready list of one queue and priority."""
        return f"{self.prefix}:q:{queue}:{priority}"

    def wake(self, queue: str) -> str:
        """The wake-up token list of a queue."""
        return f"{self.prefix}:wake:{queue}"

    def idle(self, queue: str) -> str:
        """The set of idle consumers of a queue."""
        return f"{self.prefix}:idle:{queue}"

    def inbox(self, worker: str, slot: int) -> str:
        """The inbox list of one consumer of a worker."""
        return f"{self.prefix}:w:{worker}:in:{slot}"

    def group(self, group_id: str) -> str:
        """The member list of a group."""
        return f"{self.prefix}:g:{group_id}"

    def counters(self, workflow_id: str) -> str:
        """The counters of a group or a chain."""
        return f"{self.prefix}:gc:{workflow_id}"

    def dedup(self, key: str) -> str:
        """The holder of a dedup key."""
        return f"{self.prefix}:dd:{key}"

    @property
    def delayed(self) -> str:
        """The sorted set of delayed task ids."""
        return f"{self.prefix}:delayed"

    def active(self, worker: str) -> str:
        """The hash of tasks claimed by a worker."""
        return f"{self.prefix}:w:{worker}:active"

    def claims(self, worker: str) -> str:
        """The hash of a worker's claim records (what each consumer's last claim returned)."""
        return f"{self.prefix}:w:{worker}:claims"

    def heartbeat(self, worker: str) -> str:
        """The heartbeat key of a worker."""
        return f"{self.prefix}:hb:{worker}"

    @property
    def workers(self) -> str:
        """The set of registered workers."""
        return f"{self.prefix}:workers"

    @property
    def rates(self) -> str:
        """The hash of task rate limits (ms between runs)."""
        return f"{self.prefix}:rates"

    @property
    def dead_letters(self) -> str:
        """The dead-letter list."""
        return f"{self.prefix}:dlq"

    @property
    def stats(self) -> str:
        """The counters hash."""
        return f"{self.prefix}:stats"

    def events(self, task_id: str) -> str:
        """The pub/sub channel of a task's changes."""
        return f"{self.prefix}:ev:{task_id}"

    @property
    def control(self) -> str:
        """The broadcast channel to workers."""
        return f"{self.prefix}:control"

    @property
    def events_stream(self) -> str:
        """The stream of task and worker events."""
        return f"{self.prefix}:events"

    @property
    def conf(self) -> str:
        """The settings the scripts read."""
        return f"{self.prefix}:conf"

    def counters_of(self, name: str) -> str:
        """The counters of one task name."""
        return f"{self.prefix}:m:{name}"

    @property
    def counted_names(self) -> str:
        """The set of task names with counters."""
        return f"{self.prefix}:m:names"

    def reply(self, broadcast_id: str) -> str:
        """The list of the workers' replies to one broadcast."""
        return f"{self.prefix}:reply:{broadcast_id}"

    def beat_entry(self, name: str) -> str:
        """The hash of one periodic task."""
        return f"{self.prefix}:beat:e:{name}"

    @property
    def beat_due(self) -> str:
        """The sorted set of enabled periodic tasks by due time."""
        return f"{self.prefix}:beat:due"

    @property
    def beat_names(self) -> str:
        """The set of periodic task names."""
        return f"{self.prefix}:beat:names"

    @property
    def beat_leader(self) -> str:
        """The lease of the beat process that sends periodic tasks."""
        return f"{self.prefix}:beat:leader"

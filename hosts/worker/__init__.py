"""The warm worker: one long-running process that serves the workflow's ValidateData and TransformData.

A per-batch Fargate task pays a JVM start, Spark's and GX's set-up and the first Delta read for
every batch, which is most of a small batch's time. The worker pays them once: it starts Spark (and
imports GX) before it takes any work, then long-polls the work queue that the workflow's
``sqs:sendMessage.waitForTaskToken`` states send to (``stepfunctions/...worker.asl.json``).

Per message (one batch at a time, except that waiting transformations share a run; see below):

1. the message is deleted and a first heartbeat sent: a token whose attempt already ended (the
   state timed out and was retried while the message waited) answers ``TaskTimedOut``, and the
   message is dropped, since the retry owns the batch now;
2. the job runs in this process with the task definition's environment plus the message's
   ``Environment`` (exactly the container overrides of the per-batch mode; only the variables the
   workflows send, ``TASK_VARIABLES``: a message that sets another one is refused), while a thread sends
   ``SendTaskHeartbeat``; if the state gives up on the token, the running Spark jobs are cancelled;
3. the answer has the shape of a stopped ECS task (``Containers[].Name/ExitCode``), so the workflow
   decides the same way in both modes: exit 0 and 2 (data rejected) are ``SendTaskSuccess``; a
   broken run is ``SendTaskFailure`` (``Worker.TaskFailed``), which the state retries.

A worker that dies stops heartbeating: the state fails with ``States.HeartbeatTimeout`` and its
retrier sends the batch again, to this worker's successor. While it works, a worker also keeps the
tasks waiting in the queue alive (``QueueKeeper``), so a backlog is never mistaken for a dead worker. The jobs are idempotent per file and
per stage, so a retried batch gives the same KPIs. After ``WORKER_MAX_BATCHES`` batches, or when the
JVM heap stays above ``WORKER_MAX_HEAP_FRACTION`` after a batch, the worker exits 0 between batches
and its supervisor (the ECS service, or ``ecomkpi up``) starts a fresh one.

Prechecks: the trigger also sends, for each part that lands before its day is complete, a message
without a task token (``{"Command": ["precheck"], "Environment": [...]}``). The worker validates that
part right away (``jobs.validation.job.run(..., precheck=True)``: verdict and staging rows recorded,
nothing placed) and answers nobody; the day's ValidateData then finds the verdict and only places
the file. A broken precheck is only logged: the day's own run validates the part again.

Coalescing: when a transformation task comes up, the worker also takes the other transformation
tasks waiting in the queue (up to ``WORKER_MAX_COALESCE``, same bucket, lake and tables) and runs
them as one transformation (``jobs.transformation.job.run(..., also=...)``): ten days landing at
once pay one plan, one set of silver and gold commits and one recompute instead of ten. Every token
is heartbeated and answered on its own. If the shared run breaks, each task is run again alone
before any is answered, so one broken batch never fails the others.

Its modules: ``settings`` (WORK_QUEUE_URL, WORKER_*), ``messages`` (a body read once into a task, a
precheck or an unreadable message), ``queue`` (SQS batch calls), ``heartbeat`` (the run's beats and
the waiting tasks' keeper), ``answers`` (what Step Functions is told), ``runs`` (the jobs on the warm
session), ``prechecks``, ``protection`` (ECS scale-in protection), ``status`` (the readiness file the
health check reads), ``loop`` (the ``Worker`` that ties them) and ``main`` (``python -m hosts.worker``).
"""

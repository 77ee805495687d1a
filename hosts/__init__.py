"""The programs that host the pipeline's jobs, above the pipeline library in ``jobs/``.

``jobs/`` is the pipeline: the two tasks (validation, transformation) as functions of a config and a
SparkSession, and what they share. This package holds the long-lived processes around them, which
``jobs/`` never imports:

* ``hosts.worker``: the warm worker that serves both tasks from a work queue (worker task mode);
* ``hosts.warmup``: the one-row batch the worker (and the class archive's training) runs first;
* ``hosts.jvm_archive``: the builder of the JVM's class-data archive (``make setup``, the image).

docs/architecture.md draws who may import whom.
"""

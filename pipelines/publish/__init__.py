"""The job's last steps, after a router is chosen: track the run in MLflow, score the champion, export the
router (the pyfunc and its local copy), register it and move the alias, write the model card.

``release.release`` runs them in order; ``tracking`` logs the run, ``champion`` scores the current champion
on the job's held-out queries, ``export`` writes the pyfunc, ``local_export`` keeps the folders under
``export_dir``, ``registry`` moves the alias (a compare-and-set), ``owners`` tells whose run is stale.
"""

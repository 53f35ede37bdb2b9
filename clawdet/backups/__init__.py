"""Customer backups: OpenClaw's own archive of an instance's state, made on its server, encrypted
with the instance's own key and kept in S3-compatible object storage.

Pure decisions: retention.py (7 daily, 4 weekly, 3 monthly), schedule.py (each instance's moment
in the night window), encryption.py (the file format). Outside calls: store.py (the bucket),
remote.py and remote_restore.py (the server, over SSH). The work: service.py (one backup, verify,
download, prune), restore.py (in place, under the instance's lease: hold.py), export.py (a
time-limited link), final.py (on destroy), nightly.py (the nightly pass and backup health),
alerts.py (operators' email), requests.py (owners' restores and exports, run by workers).
"""

"""A failed remote command reaches the owner as the failed step's own last line, never as the
engine's wall of text or the command itself."""

from clawdet.reconciler.reconciler import short_reason

ENGINE_ERROR = """ code: 1
 stdout: Updating (alice):
 ~  command:remote:Command instance-deploy **updating failed** [diff: ~create]; error: Process exited
Diagnostics:
  command:remote:Command (instance-deploy):
    error: Process exited with status 32: running "cloud-init status --wait && mountpoint /mnt/x && mv a b":
    status: done
    /mnt/openclaw-data is not a mountpoint

  pulumi:pulumi:Stack (clawdet-instance-alice):
    error: update failed

Resources:
    2 errored
"""


def test_the_failed_steps_last_line_is_the_reason():
    reason = short_reason(RuntimeError(ENGINE_ERROR))
    assert reason == "the server did not take its new configuration: /mnt/openclaw-data is not a mountpoint"


def test_a_command_that_printed_nothing_gives_its_exit_status():
    text = 'error: Process exited with status 127: running "frobnicate":\n\nResources:\n'
    assert short_reason(RuntimeError(text)).endswith("configuration: exit status 127")


def test_other_errors_keep_their_error_line():
    assert (
        short_reason(RuntimeError("error: hcloud: server limit exceeded")) == "hcloud: server limit exceeded"
    )

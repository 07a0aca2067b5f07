"""What provisioning installs on a board (importable as `netcut_deploy` so an installed host finds it):

- netcut-agent.service: the systemd user unit (boards with systemd);
- netcut-agent-supervise.sh: a supervisor with a pid file that restarts the agent (boards without).
"""

from importlib import resources


def read(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text()

"""Runs a frontend or an action server under Swarm, and takes it out of the LBs before it stops.

Swarm stops a task with SIGTERM, and a server that stops listening resets the connections its
LB was just opening. So the task answers its LBs' agent checks (HAProxy `agent-check`) on
SYRCAD_AGENT_PORT: "ready" while it serves, "drain" once asked to stop. The LBs then send it no
new request; SYRCAD_LEAVE_LBS_S later the server gets the SIGTERM and finishes what it has.

    python leave_lbs_first.py COMMAND...
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

AGENT_PORT = int(os.environ["SYRCAD_AGENT_PORT"])
LEAVE_LBS_S = float(os.environ.get("SYRCAD_LEAVE_LBS_S", "5"))
answer = [b"ready\n"]


def agent() -> None:
    with socket.create_server(("", AGENT_PORT)) as listening:
        while True:
            connection, _ = listening.accept()
            with connection:
                connection.sendall(answer[0])


def stop(signum: int, _frame: object) -> None:
    answer[0] = b"drain\n"
    time.sleep(LEAVE_LBS_S)
    server.send_signal(signum)


server = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
threading.Thread(target=agent, daemon=True).start()
sys.exit(server.wait())

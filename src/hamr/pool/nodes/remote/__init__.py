"""The remote node kind: a `hamr agent` on another host, over the pool's HTTP API.

The server's side (in `hamr pool up`): server.py, server_replicas.py, output_check.py.
The agent's side (in `hamr agent`): agent.py, agent_link.py, agent_replicas.py.
Both: names.py. Neither side imports the other.
"""

"""An example tool for examples/agent_tools.yaml: reads the tool input (JSON) on stdin,
prints the result on stdout. A real one would query a database or an API."""

import json
import sys

ORDERS = {"A-1001": "shipped on 2026-11-20", "A-1002": "waiting for stock", "A-1003": "delivered"}

request = json.load(sys.stdin)
order_id = str(request.get("order_id", ""))
print(f"order {order_id}: {ORDERS.get(order_id, 'not found')}")

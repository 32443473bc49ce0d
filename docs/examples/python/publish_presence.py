"""Publish to a user and read who is online, from a Python backend (httpx).

    pip install httpx   # or: apt install python3-httpx
    HERALD_URL=http://127.0.0.1:8080 HERALD_API_KEY=... python3 publish_presence.py [user]
"""

import os
import sys

import httpx

HERALD_URL = os.environ.get("HERALD_URL", "http://127.0.0.1:8080")
API_KEY = os.environ["HERALD_API_KEY"]


def check(response: httpx.Response) -> dict:
    """The JSON answer, or exit with the problem document's `detail` (it says what to fix)."""
    if response.is_error:
        problem = response.json() if response.headers.get("content-type", "").startswith("application/problem+json") else {}
        sys.exit(f"{response.request.method} {response.request.url.path}: {response.status_code} {problem.get('detail', response.text)}")
    return response.json()


def main() -> None:
    user = sys.argv[1] if len(sys.argv) > 1 else "alice"
    # One client for every call: it keeps the connection to Herald open.
    with httpx.Client(base_url=HERALD_URL, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as herald:
        sent = check(herald.post("/api/publish", json={
            "to": {"users": [user]},
            "event": "ALERT",
            "data": {"text": "Hello from Python"},
        }))
        print(f"published {sent['id']} to {sent['delivered']} connection(s)")

        online = check(herald.get("/api/users", params={"limit": 100}))
        print("online:", ", ".join(f"{u['id']} ({u['connections']})" for u in online["users"]) or "nobody")

        one = check(herald.get(f"/api/users/{user}"))
        state = "online" if one["online"] else "offline"
        print(f"{one['id']} is {state} with {len(one['connections'])} connection(s)")


if __name__ == "__main__":
    main()

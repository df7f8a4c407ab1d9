"""Readiness probe for ./start (runs with the LocalStack venv's python).

    probe.py ENDPOINT TIMEOUT_SECONDS [PID]

Makes REAL calls (S3 ListBuckets and EC2 DescribeVpcs, signed like any SDK
client) until both succeed or TIMEOUT_SECONDS pass. /_localstack/health alone
is not readiness: a service may still be loading behind it.

If PID is given and that process ends (or turns into a zombie) while waiting,
gives up at once.

Exit codes: 0 ready, 2 the process PID is gone, 3 timed out. On failure the
last error goes to stderr as one line.
"""

import os
import sys
import time

import botocore.session
from botocore.config import Config


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # state is the field after the ")" that closes the command name
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def main():
    endpoint = sys.argv[1]
    deadline = time.monotonic() + float(sys.argv[2])
    pid = int(sys.argv[3]) if len(sys.argv) > 3 else None

    # An HTTP(S)_PROXY in the environment (CI) must not catch loopback calls.
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, ("127.0.0.1,localhost", os.environ.get(var))))

    session = botocore.session.get_session()
    config = Config(
        connect_timeout=2,
        read_timeout=15,
        retries={"max_attempts": 1},
        s3={"addressing_style": "path"},
    )
    common = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )
    s3 = session.create_client("s3", **common)
    ec2 = session.create_client("ec2", **common)

    last = "no answer yet"
    while True:
        if pid is not None and not alive(pid):
            print(f"process {pid} is gone; last probe error: {last}", file=sys.stderr)
            return 2
        try:
            s3.list_buckets()
            ec2.describe_vpcs()
            return 0
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = f"{type(e).__name__}: {e}".replace("\n", " ")
        if time.monotonic() >= deadline:
            print(f"not ready after {sys.argv[2]} s; last probe error: {last}", file=sys.stderr)
            return 3
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main())

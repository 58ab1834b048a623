"""A command-line task: reads argv, reports metrics the three supported ways."""
import json
import os
import signal
import sys
import time

args = sys.argv[1:]
mode = args[0]
value = args[1] if len(args) > 1 else ""
params = json.loads(os.environ["PB_PARAMS"])
if mode == "file":
    with open(os.environ["PB_RESULT"], "w") as f:
        json.dump({"arg": value, "len": len(value), "env_value": params.get("v")}, f)
elif mode == "stdout":
    print("some progress output")
    print(json.dumps({"arg": value, "len": len(value)}))
elif mode == "exit":
    print("about to fail", file=sys.stderr)
    sys.exit(4)
elif mode == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
elif mode == "sleep":
    time.sleep(30)
elif mode == "alloc":
    block = bytearray(3 * 1024 ** 3)
elif mode == "badjson":
    print("{not json")

"""Scoring throughput blob to blob, beside plain pandas on the same CSV, and peak memory.

For 1M and 4M census rows: the job path (`scoring.Slice`: chunked download, sample scorer,
staged blocks, commit) and, as the floor, pandas alone reading the same CSV from memory and
writing it back. Each measurement runs in a fresh process so its peak memory (VmHWM) is its own.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time

from common import ROOT, start_azurite, use_storage

HERE = os.path.dirname(os.path.abspath(__file__))


def _peak_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that across fork and exec, so a
    child would report the parent's peak (which holds the generated CSV)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _NoLease:
    """Scoring measured alone: the runner's lease as the slice sees it (`scoring.Progress`),
    with no job row to check or write."""

    def check(self) -> None:
        pass

    def note(self, **progress) -> None:
        pass


CHUNK_ROWS = 50000  # the app's default SCORING_CHUNK_ROWS


def measure_job(connection_string: str, blob: str, rows: int) -> dict:
    use_storage(connection_string, "scoring")
    from samples import census
    from shared import bes, scoring
    location = {"ConnectionString": connection_string, "BaseLocation": None, "SasBlobToken": None}
    request = bes.JobRequest(bes.parse_location({**location, "RelativeLocation": f"bench/{blob}"}, "Input"),
                             {"output1": bes.parse_location({**location, "RelativeLocation": f"bench/out-{blob}"},
                                                            "Outputs.output1")}, {}, None)
    job = {"JobId": "bench", "PartitionKey": "bench"}  # a job row with no checkpoint yet
    work = scoring.Slice(job, _NoLease(), request, census.score, CHUNK_ROWS, time.monotonic() + 3600)  # one slice
    began = time.perf_counter()
    # What the runner does with one slice that reaches the end (`shared.runner._run_slice`),
    # less its job-row writes: score, stage what is held, take the checkpoint (the fence's
    # fields), make the outputs visible.
    assert work.score(to_the_end=True)
    work.ready_to_commit()
    position = work.checkpoint()
    work.commit()
    seconds = time.perf_counter() - began
    assert work.position["RowsScored"] == rows == position["RowsScored"]
    from azure.storage.blob import BlobServiceClient
    written = BlobServiceClient.from_connection_string(connection_string).get_blob_client("bench", f"out-{blob}")
    assert written.get_blob_properties().size > 0
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
            "peak_rss_mb": _peak_mb()}


def measure_pandas(connection_string: str, blob: str, rows: int) -> dict:
    import pandas as pd
    from azure.storage.blob import BlobServiceClient
    data = BlobServiceClient.from_connection_string(connection_string).get_blob_client("bench", blob) \
        .download_blob().readall()
    began = time.perf_counter()
    frame = pd.read_csv(io.BytesIO(data))
    frame.to_csv(index=False).encode("utf-8")
    seconds = time.perf_counter() - began
    return {"rows": len(frame), "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
            "peak_rss_mb": _peak_mb()}


def _in_child(kind: str, connection_string: str, blob: str, rows: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", kind, connection_string, blob, str(rows)],
                            capture_output=True, text=True, check=True, cwd=HERE)
    return json.loads(output.stdout.strip().splitlines()[-1])


def run(sizes: list[int]) -> dict:
    azurite = start_azurite(ROOT, None)
    try:
        sys.path.insert(0, str(ROOT))
        from azure.storage.blob import BlobServiceClient

        from samples import census
        container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("bench")
        container.create_container()
        results = {}
        for rows in sizes:
            blob = f"census-{rows}.csv"
            writer = container.get_blob_client(blob)
            writer.upload_blob(b"".join(piece.encode() for piece in census.generate_csv(rows, seed=7)), overwrite=True)
            results[str(rows)] = {"job_blob_to_blob": _in_child("job", azurite.connection_string, blob, rows),
                                  "pandas_read_write_only": _in_child("pandas", azurite.connection_string, blob, rows),
                                  "csv_megabytes": round(writer.get_blob_properties().size / 2 ** 20, 1)}
        return results
    finally:
        azurite.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,4000000")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "CONNECTION", "BLOB", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, connection, blob, rows = args.child
        sys.path.insert(0, str(ROOT))
        measure = measure_job if kind == "job" else measure_pandas
        print(json.dumps(measure(connection, blob, int(rows))))
        return {}
    result = run([int(s) for s in args.sizes.split(",")])
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

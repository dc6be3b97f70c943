"""Transfers for real: the local runtime (bubblewrap) GETs uploads from and PUTs downloads to
an HttpStorage, on a served LocalNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from _work_support import open_work

from golem_trio.localnet import ImageStore, local_runtime_factory
from golem_trio.work import (
    CommandExecutionError,
    CommandNotRun,
    DownloadFinished,
    open_http_storage,
)


def image(folder: Path) -> Path:
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "README").write_text("an empty image\n")
    return folder


async def test_upload_run_and_download_through_the_storage(tmp_path: Path) -> None:
    store = ImageStore()
    digest = store.register(image(tmp_path / "image"))
    runtime = local_runtime_factory(store, tmp_path / "sandboxes")
    local_file = tmp_path / "local.txt"
    local_file.write_text("from a file\n")
    downloaded = tmp_path / "back" / "upper.txt"
    package = {"golem.srv.comp.task_package": f"hash:sha3:{digest}:http://127.0.0.1/i.gvmi"}
    async with open_http_storage() as storage:
        async with open_work(runtime, serve=True, storage=storage, properties=package) as work:
            ctx = work.ctx
            with trio.fail_after(60):
                ctx.deploy()
                ctx.start()
                await ctx.commit()

                script = ctx.new_script(timeout=60)
                script.upload_bytes(b"hello golem\n", "/golem/input/data.txt")
                script.send_file(local_file, "/golem/input/file.txt")
                script.upload_json({"n": 7}, "/golem/input/conf.json")
                cat = script.run("/bin/cat", "/golem/input/data.txt", "/golem/input/file.txt")
                script.run(
                    "/bin/sh",
                    "-c",
                    "mkdir -p /golem/output && tr a-z A-Z < /golem/input/data.txt"
                    " > /golem/output/upper.txt && cp /golem/input/conf.json /golem/output/",
                )
                as_file = script.download_file("/golem/output/upper.txt", downloaded)
                as_bytes = script.download_bytes("/golem/output/upper.txt")
                as_json = script.download_json("/golem/output/conf.json")
                results = await script

                assert (await cat).stdout == "hello golem\nfrom a file\n"
                assert downloaded.read_text() == "HELLO GOLEM\n"
                assert (await as_file).data is None
                assert (await as_bytes).data == b"HELLO GOLEM\n"
                assert (await as_json).json == {"n": 7}
                assert [r.success for r in results] == [True] * 8
                assert DownloadFinished(ctx.activity_id, downloaded) in work.events

                # Too big for its limit: the storage answers 413 and the command fails.
                small = ctx.new_script()
                small.download_bytes("/golem/output/upper.txt", limit=4)
                after = small.run("/bin/echo", "never")
                with pytest.raises(CommandExecutionError, match="413"):
                    await small
                with pytest.raises(CommandNotRun):
                    await after

            # Nothing stays published once the batches are done.
            assert storage._files == {}
            assert storage._blobs == {}
            assert storage._receipts == {}

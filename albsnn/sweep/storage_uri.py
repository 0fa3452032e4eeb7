"""Where Ray Tune keeps a sweep's trial checkpoints and experiment snapshots: a folder or a URI.

A pipeline's ``storage`` is either a local (or shared, e.g. NFS) folder or a URI that ``pyarrow.fs``
opens: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``hdfs://host/path``, ... (credentials and
endpoints come from the usual environment, e.g. ``AWS_ENDPOINT_URL``; pass them to the workers with
the pipeline's ``runtime_env.env_vars``). Without this, ``s3://b/x`` was taken for a relative path
and became ``<cwd>/s3:/b/x``.

    is_uri("s3://bucket/sweeps")                       # True
    experiment_uri("s3://b/sweeps?region=x", "demo", "demo-1")   # "s3://b/sweeps/demo/demo-1?region=x"
    check_storage_uri("s4://bucket")                   # ConfigError: no filesystem for the scheme
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from albsnn.errors import ConfigError

__all__ = ["is_uri", "join_uri", "check_storage_uri"]

_LOCAL_SCHEMES = ("", "file", "local")


def is_uri(value: str) -> bool:
    """True for ``scheme://...`` other than ``file://`` (which is a local folder)."""
    return "://" in value and urlsplit(value).scheme not in _LOCAL_SCHEMES


def join_uri(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended to its path (a query string, e.g. ``?region=...``, stays last)."""
    split = urlsplit(uri)
    path = "/".join([split.path.rstrip("/"), *parts])
    return urlunsplit((split.scheme, split.netloc, path, split.query, split.fragment))


def check_storage_uri(uri: str, where: str = "storage") -> None:
    """Fail, naming ``uri``, when ``pyarrow.fs`` has no filesystem for it or cannot reach it."""
    import pyarrow
    import pyarrow.fs

    scheme = urlsplit(uri).scheme
    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, ValueError) as e:
        raise ConfigError(
            f"{where} {uri}: no filesystem for {scheme}:// ({_first_line(e)}); use a folder shared by "
            "all nodes or a URI pyarrow.fs opens (s3://bucket/path, gs://bucket/path, hdfs://host/path)"
        ) from None
    try:
        fs.get_file_info(path)
    except OSError as e:
        raise ConfigError(
            f"{where} {uri} is not reachable ({_first_line(e)}); check the bucket, the endpoint "
            "(e.g. AWS_ENDPOINT_URL) and the credentials"
        ) from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]

"""`torch-qinit push DIR REPO_ID`: upload a GHN checkpoint you trained to the Hugging Face Hub.

    torch-qinit push runs/ghn-qat/final your-org/ghn-qat-fmnist
    torch-qinit push runs/ghn-qat/final your-org/ghn-qat-fmnist --revision v2 --private

DIR is a checkpoint directory (config.json + model.safetensors [+ README.md]), e.g. a training run's
final/ folder. It is checked like load_ghn does (sha256, keys) before anything is uploaded. Log in first
with `hf auth login` or set HF_TOKEN. Load it back with load_ghn(REPO_ID) or
initialize_(model, weights=REPO_ID).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch-qinit push", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", help="checkpoint directory written by save_pretrained / train")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub model repo, 'namespace/name' (created if missing)")
    p.add_argument("--revision", default=None, help="branch to commit to (created from main if missing)")
    p.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    p.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN or the saved login)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--no-create", dest="create_repo", action="store_false",
                   help="fail instead of creating a missing repo")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from huggingface_hub.utils import HfHubHTTPError

    from torch_qinit.hub import GHNLoadError
    from torch_qinit.hub.push import push_to_hub

    try:
        info = push_to_hub(args.directory, args.repo_id, revision=args.revision, private=args.private,
                           token=args.token, commit_message=args.message, create_repo=args.create_repo)
    except (GHNLoadError, ValueError, HfHubHTTPError) as exc:
        print(f"torch-qinit push: error: {exc}", file=sys.stderr)
        return 1
    print(f"pushed {args.directory} to {args.repo_id}@{args.revision or 'main'}: commit {info.oid}")
    print(f"  {info.commit_url}")
    print(f"  load it with: torch_qinit.hub.load_ghn({args.repo_id!r}"
          + (f", revision={args.revision!r})" if args.revision else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

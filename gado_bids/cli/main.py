"""`run.py` / `gadosynth`: parse, set up the process, dispatch, turn errors into exit codes."""
import dataclasses
import logging
import signal
import sys

from gado_bids.cli.parser import build_parser
from gado_bids.errors import ExitCode, GadoError, Terminated
from gado_bids.workflows.config import RunConfig

LOG = logging.getLogger("gadosynth")


def configure_logging():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [gadosynth] %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("bids").setLevel(logging.WARNING)  # pybids chatter about its schema


def _raise_terminated(signum, frame):
    raise Terminated()


def run_config(namespace) -> RunConfig:
    return RunConfig(**{field.name: getattr(namespace, field.name)
                        for field in dataclasses.fields(RunConfig)})


def main(argv=None, prog="gadosynth") -> int:
    args = run_config(build_parser(prog).parse_args(argv))
    configure_logging()
    signal.signal(signal.SIGTERM, _raise_terminated)
    from gado_bids import runtime
    runtime.configure_process(args.nthreads)  # before ANTs / torch are imported
    try:
        if args.analysis_level == "participant":
            from gado_bids.workflows.participant import run_participant_level
            return int(run_participant_level(args))
        from gado_bids.workflows.group import run_group_level
        return int(run_group_level(args))
    except GadoError as error:
        LOG.error("%s", error)
        return int(error.exit_code)
    except KeyboardInterrupt:
        LOG.error("interrupted: outputs already complete are kept; re-run to finish the rest")
        return int(ExitCode.INTERRUPTED)
    except Terminated:
        LOG.error("terminated (SIGTERM): temporary files removed, outputs already complete are "
                  "kept; re-run to finish the rest")
        return int(ExitCode.TERMINATED)


if __name__ == "__main__":
    sys.exit(main())

"""`tfstack serve`: tensorflow_model_server's command line on the embedded server.

Click only collects the raw arguments: TF Serving's `--flag=value` grammar (bare bools,
unknown flags that warn instead of failing) is parsed by `tfstack.serving.server._flags`.
"""

from __future__ import annotations

import sys

import click


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Serve SavedModels the way tensorflow_model_server does (same flags, REST and gRPC APIs).

    Example: tfstack serve --model_name=digits --model_base_path=/abs/models/digits --rest_api_port=8501
    """
    from tfstack.serving.server._server import main

    sys.exit(main(list(ctx.args)))

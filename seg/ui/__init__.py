"""`seg ui`: a local web front end to watch, steer and compare training runs.

May import: jobs, training, inference, evaluation, models, data, geo (it sits beside `jobs`,
under the CLI: it reads what runs write and starts `seg train` as the CLI would).

roots (what the server may read or write) -> runs (a run folder, read without trusting it) ->
actions (start, stop, resume, a new LR) -> model_view (the network, block by block) ->
config_form (the form the config schema makes) -> app (the Starlette routes) -> server (bind,
token, serve). Every JavaScript and CSS file the pages load ships in `static/`.
"""

"""Bulk restoration outside ComfyUI: image files, folders, videos and frame folders, on this machine or over a
Ray cluster. Each concern has its module:

- `plan`: what is restored into what (the jobs), from the inputs and the output a user names
- `provenance`: how an output records what made it, so reruns skip finished work and never clobber another job's
- `outputs`: keys, notes, and publishing an output whole without replacing another job's
- `video`: PyAV (optional): probing, decoding a frame range, streaming encoder, audio copy, joining segments
- `worker`: one loaded model restoring jobs (or segments of a video) into their outputs
- `local`: the local runner; `ray_runner`: the Ray Data runner (the only module that imports Ray, and only
  `--ray` imports it)
- `settings`: what a run is told (Settings) and what it reports per job (Outcome)
"""

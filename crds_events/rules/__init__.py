"""The CRDS rules language, pure: mapping text parsed safely (`parse`, `fastparse`), loaded
and checked (`document`, `checksum`), selectors (`selectors`: `match`, `ordered`), value
conditioning, best references (`context`, `index`, `bestrefs`), the canonical format,
names, and the logical difference of two mappings (`diff`).

Nothing here imports the store, the web, handlers or watchers.
"""

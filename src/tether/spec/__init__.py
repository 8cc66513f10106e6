"""The declarative integration spec: `tether.toml` and the presets shipped with tether.

```python
import tether.spec

spec = tether.spec.load("tether.toml")
async with spec.client("weather") as client:
    current = await spec.integration("weather").call(client, "current", q="London")
```

See docs/spec.md for the file format and docs/presets.md for the presets.
"""

from tether.spec._load import Origin, Problem, SpecError, preset_names, preset_text
from tether.spec._resolve import Setting, default_token_store_path
from tether.spec._runtime import Call, CheckResult, Integration, Spec, classify, load

__all__ = [
    "Call",
    "CheckResult",
    "Integration",
    "Origin",
    "Problem",
    "Setting",
    "Spec",
    "SpecError",
    "classify",
    "default_token_store_path",
    "load",
    "preset_names",
    "preset_text",
]

"""Complete `auto_map` entries for every Auto class of a family, written on `save_pretrained`."""


class AutoMapMixin:
    """Adds `auto_map` entries for all of a family's classes, not only the saved one.

    `save_pretrained` records just the saved class in `auto_map`; a folder saved from a
    `...ForCausalLM` should also load with `AutoModel` (and vice versa). Families list their classes
    in `_auto_map_classes` (`{"AutoModel": "MaskedMixerModel", ...}`, all defined in the same module).
    """

    _auto_map_classes: dict = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        if getattr(self, "_auto_class", None) is not None and self._auto_map_classes:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_class, class_name in self._auto_map_classes.items():
                auto_map.setdefault(auto_class, f"{module}.{class_name}")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

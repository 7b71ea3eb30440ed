"""Which of a node's inputs the editor shows as widgets, and how `widgets_values` maps onto them.

The editor saves widget values positionally, one per widget in the order the node definition
declares its inputs (required, then optional), plus values of UI-only widgets that never reach the
prompt: the "control after generate" combo after seed-like numbers, its filter box after combos,
and the upload button after media pickers. This module rebuilds that layout from the
`/object_info` entry and reads the values back by name, tolerating files saved by older or newer
editors whose layout differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from flowscope.graph._workflow_model import WorkflowError, short
from flowscope.graph.schema import COMBO, InputSpec, normalize_type, parse_input

# Input types the editor builds a widget for (frontend `ComfyWidgets`); others are sockets only.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", COMBO, "MARKDOWN"})
# Widget types that also get an input socket, so a link can replace the widget value.
SOCKET_WIDGET_TYPES = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", COMBO})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
# INT inputs with these names get a control widget unless control_after_generate says otherwise.
SEED_NAMES = frozenset({"seed", "noise_seed"})
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")


class MissingType(Enum):
    MISSING = "MISSING"


MISSING = MissingType.MISSING


class SlotKind(Enum):
    WIDGET = "widget"
    CONTROL = "control"  # control_after_generate value: fixed / increment / ...
    FILTER = "filter"  # the combo control's filter-list text box
    UPLOAD = "upload"  # the upload button after an image / video / audio picker
    LEGACY = "legacy"  # pre-1.16 editors kept a dummy value for forceInput inputs


@dataclass(frozen=True, slots=True)
class Widget:
    name: str
    type: str
    default: Any  # MISSING when the editor would have no value either

    @property
    def is_int(self) -> bool:
        return self.type == "INT"


@dataclass(frozen=True, slots=True)
class Slot:
    kind: SlotKind
    widget: Widget | None = None


Layout = tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class NodeLayout:
    class_type: str
    display_name: str
    widgets: Mapping[str, Widget]  # the widgets a current editor shows, in order
    # Candidate positional layouts of `widgets_values`, the current editor's first.
    layouts: tuple[Layout, ...]
    sockets: tuple[tuple[str, str], ...]  # input sockets in the editor's order: (name, type)
    input_types: Mapping[str, str]
    output_types: tuple[str, ...]


def build_layout(class_type: str, info: Any) -> NodeLayout:
    """Derive the editor's widget layout for one node type from its `/object_info` entry."""
    if not isinstance(info, Mapping):
        raise _bad_definition(class_type, "it is not an object")
    declared = info.get("input") or {}
    if not isinstance(declared, Mapping):
        raise _bad_definition(class_type, "'input' is not an object")
    order = info.get("input_order")
    order = order if isinstance(order, Mapping) else {}

    specs: list[InputSpec] = []
    for section in ("required", "optional"):
        for name, declaration in _ordered(class_type, declared.get(section), order.get(section)):
            try:
                specs.append(parse_input(name, declaration, section == "required"))
            except ValueError as exc:
                raise _bad_definition(class_type, str(exc)) from None
    required = [spec for spec in specs if spec.required]
    # The editor appends its upload button as one more required input (uploadImage.ts).
    upload_after = len(required) - 1 if any(_has_upload(spec) for spec in required) else -1

    # The current editor (1.16+) shows every widget-typed input that is not forceInput; some
    # editors also treated the deprecated defaultInput like forceInput; editors before 1.16 saved
    # a dummy value for forceInput inputs too (frontend `migrateWidgetsValues`).
    current: list[Slot] = []
    no_default_input: list[Slot] = []
    legacy: list[Slot] = []
    sockets: list[tuple[str, str]] = []
    socket_widgets: list[tuple[str, str]] = []
    widgets: dict[str, Widget] = {}
    for position, spec in enumerate(specs):
        widget_type = _widget_type(spec)
        force_input = bool(spec.options.get("forceInput"))
        if widget_type is None or force_input:
            sockets.append((spec.name, spec.type))
        elif spec.type in SOCKET_WIDGET_TYPES:
            socket_widgets.append((spec.name, spec.type))
        if widget_type is not None:
            widget = Widget(spec.name, widget_type, _default(spec, widget_type))
            trailer = [Slot(kind) for kind in _control_slots(spec, widget_type)]
            if force_input:
                legacy += [Slot(SlotKind.LEGACY), *trailer]
            else:
                widgets[spec.name] = widget
                slots = [Slot(SlotKind.WIDGET, widget), *trailer]
                current += slots
                legacy += slots
                if not spec.options.get("defaultInput"):
                    no_default_input += slots
        if position == upload_after:
            for slots in (current, no_default_input, legacy):
                slots.append(Slot(SlotKind.UPLOAD))

    layouts: list[Layout] = []
    for candidate in (tuple(current), tuple(no_default_input), tuple(legacy)):
        if candidate not in layouts:
            layouts.append(candidate)
    outputs = info.get("output")
    display_name = info.get("display_name")
    return NodeLayout(
        class_type=class_type,
        display_name=display_name if isinstance(display_name, str) and display_name else class_type,
        widgets=widgets,
        layouts=tuple(layouts),
        sockets=tuple(sockets + socket_widgets),
        input_types={spec.name: spec.type for spec in specs},
        output_types=tuple(normalize_type(t) for t in outputs) if isinstance(outputs, list) else (),
    )


def widget_values(
    layout: NodeLayout, saved: Sequence[Any] | Mapping[str, Any] | None
) -> dict[str, Any]:
    """The widget inputs of one node, by name, read from its saved `widgets_values`."""
    if isinstance(saved, Mapping):  # some custom nodes save {widget_name: value}
        values: dict[str, Any] = {}
        for name, widget in layout.widgets.items():
            value = saved.get(name, widget.default)
            if value is not MISSING:
                values[name] = value
        return values
    saved = saved or ()
    for layout_candidate in layout.layouts:
        if len(layout_candidate) == len(saved):
            return {
                slot.widget.name: value
                for slot, value in zip(layout_candidate, saved, strict=True)
                if slot.widget is not None
            }
    return _tolerant_values(layout.layouts[0], saved)


def is_control_value(value: Any) -> bool:
    # Very old files saved the control widget as a "randomize" toggle: true / false.
    return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)


def _tolerant_values(slots: Layout, saved: Sequence[Any]) -> dict[str, Any]:
    """Map values onto a layout they do not fit exactly (a file from another editor version).

    Real widgets take values in order; a UI-only slot takes a value only when it looks like one
    and enough values remain for the real widgets after it. Missing values fall back to the
    defaults the editor would show.
    """
    widgets_after = [0] * (len(slots) + 1)
    for index in range(len(slots) - 1, -1, -1):
        is_widget = slots[index].kind is SlotKind.WIDGET
        widgets_after[index] = widgets_after[index + 1] + is_widget
    values: dict[str, Any] = {}
    cursor = 0
    for index, slot in enumerate(slots):
        surplus = (len(saved) - cursor) - widgets_after[index + 1]
        widget = slot.widget
        if widget is None:
            if cursor < len(saved) and surplus > 0 and _fits(slot.kind, saved[cursor]):
                cursor += 1
            continue
        if cursor < len(saved):
            values[widget.name] = saved[cursor]
            cursor += 1
            surplus -= 1
        elif widget.default is not MISSING:
            values[widget.name] = widget.default
        next_is_control = cursor < len(saved) and is_control_value(saved[cursor])
        if widget.is_int and surplus > 0 and next_is_control and _has_no_control(slots, index):
            cursor += 1  # saved by an editor that gave this number a control widget
    return values


def _has_no_control(slots: Layout, index: int) -> bool:
    return index + 1 >= len(slots) or slots[index + 1].kind is not SlotKind.CONTROL


def _fits(kind: SlotKind, value: Any) -> bool:
    if kind is SlotKind.CONTROL:
        return is_control_value(value)
    if kind is SlotKind.FILTER:
        return value is None or isinstance(value, str)
    return True


def _ordered(class_type: str, section: Any, order: Any) -> list[tuple[str, Any]]:
    """A section's inputs in `input_order` when it is usable, else in declaration order."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        raise _bad_definition(class_type, "an input section is not an object")
    names = (
        [n for n in order if isinstance(n, str) and n in section] if isinstance(order, list) else []
    )
    listed = set(names)
    names += [n for n in section if isinstance(n, str) and n not in listed]
    return [(name, section[name]) for name in dict.fromkeys(names)]


def _widget_type(spec: InputSpec) -> str | None:
    widget_type = spec.options.get("widgetType")
    candidate = widget_type if isinstance(widget_type, str) and widget_type else spec.type
    return candidate if candidate in WIDGET_TYPES else None


def _control_slots(spec: InputSpec, widget_type: str) -> tuple[SlotKind, ...]:
    control = spec.options.get("control_after_generate")
    if widget_type == "INT":
        wanted = spec.name in SEED_NAMES if control is None else bool(control)
        return (SlotKind.CONTROL,) if wanted else ()
    if widget_type == "FLOAT" and control:
        return (SlotKind.CONTROL,)
    if widget_type == COMBO and control:
        return (SlotKind.CONTROL, SlotKind.FILTER)
    return ()


def _has_upload(spec: InputSpec) -> bool:
    if spec.type != COMBO:
        return False
    flags = (*UPLOAD_FLAGS, "audio_upload")
    return any(spec.options.get(flag) is True for flag in flags)


def _default(spec: InputSpec, widget_type: str) -> Any:
    default = spec.options.get("default")
    if default is not None:
        return default
    if widget_type in ("INT", "FLOAT"):
        return 0
    if widget_type == "BOOLEAN":
        return False
    if widget_type in ("STRING", "MARKDOWN"):
        return ""
    if widget_type == COMBO and spec.choices:
        return spec.choices[0]
    return MISSING


def _bad_definition(class_type: str, why: str) -> WorkflowError:
    return WorkflowError(
        f"the node definition of {short(class_type)} is malformed ({why}); "
        "fix the node pack's INPUT_TYPES"
    )

"""Step 3: the memory budget, with the live estimate of a trial and what fits."""

from __future__ import annotations

from dataclasses import replace

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Input, Static

from advisor.app.advice import memory_advice
from advisor.app.screens.step import StepScreen


class MemoryScreen(StepScreen):
    step_title = "3/4  How much memory may a trial use?"

    def compose_step(self) -> ComposeResult:
        budget = self.advisor_app.choices.memory_budget or ""
        yield Static("GPU memory, or RAM when training on CPU (e.g. 8GiB); empty for no limit", classes="field-label")
        yield Input(budget, placeholder="8GiB", id="budget")
        yield Static("", id="estimate")

    def on_mount(self) -> None:
        self.estimate(self.query_one("#budget", Input).value.strip())

    def advice_text(self) -> str:
        return memory_advice()

    @on(Input.Changed, "#budget")
    def changed(self, event: Input.Changed) -> None:
        self.estimate(event.value.strip())

    @work(thread=True, exclusive=True, exit_on_error=False)
    def estimate(self, budget: str) -> None:
        """The breakdown of a paper-default trial (r=16, all linear layers, 4 x 512) and, under a budget, what fits."""
        from tuner.errors import AdvisorError
        from tuner.memory.estimate import PARTS, TrainSetup, estimate, model_shape
        from tuner.memory.report import feasible_text, memory_options, memory_report, options_text
        from tuner.memory.sizes import format_size, machine_memory, parse_size

        problem = ""  # a budget that does not parse is said once, where Next would say it
        try:
            shape = model_shape(self.advisor_app.choices.model)
            setup = TrainSetup(rank=16, targets="all", batch=4, seq_len=512)
            figures = estimate(shape, setup).as_dict()
            lines = ["A trial at r=16 on all linear layers, batch 4 x 512 tokens, on CPU:"]
            lines += [f"  {part:12s} {format_size(figures[f'{part}_bytes']):>10s}" for part in PARTS]
            lines.append(f"  {'total':12s} {format_size(figures['total_bytes']):>10s}")
            try:
                size = parse_size(budget) if budget else None
            except ValueError as error:
                size, problem = None, str(error)
            machine = machine_memory()
            if size is not None and machine is not None and size > machine:
                lines += ["", f"This machine has {format_size(machine)} of RAM: a budget above it limits nothing here."]
            if size is not None:
                report = memory_report(self.advisor_app.choices.model, shape, setup, size)
                options = memory_options(shape, setup, size)
                lines += ["", feasible_text(report), "", "Ways to train a trial:", options_text(options)]
                if not options[0]["fits"] and not options[1]["fits"] and options[2]["fits"]:
                    lines.append("Only QLoRA fits: the study trains its trials on 4-bit weights (--quantize nf4).")
            message = "\n".join(lines)
        except (AdvisorError, ValueError) as error:
            message = f"[red]{error}[/red]"
        self.app.call_from_thread(self.estimated, message, problem)

    def estimated(self, message: str, problem: str) -> None:
        self.query_one("#estimate", Static).update(message)
        self.show_error(problem)

    def accept(self) -> str | None:
        from tuner.errors import AdvisorError
        from tuner.memory.sizes import parse_size

        budget = self.query_one("#budget", Input).value.strip() or None
        if budget is not None:
            try:
                problem = too_small(self.advisor_app.choices.model, parse_size(budget))
            except (AdvisorError, ValueError) as error:
                return str(error)
            if problem is not None:
                return problem
        self.advisor_app.choices = replace(self.advisor_app.choices, memory_budget=budget)
        return None


def too_small(model: str, budget: int) -> str | None:
    """Why no trial of the study fits a memory budget (the smallest: r=8 on attention at the trial's batch 4 x 512
    tokens), or None when one does."""
    from tuner.memory.estimate import TrainSetup, estimate, model_shape
    from tuner.memory.report import weights_refusal
    from tuner.memory.sizes import format_size

    shape = model_shape(model)
    smallest = TrainSetup(rank=8, targets="attention", batch=4, seq_len=512)
    if estimate(shape, replace(smallest, quantized=True)).total <= budget:
        return None  # QLoRA fits where 16-bit weights might not: the study turns it on
    refusal = weights_refusal(shape, smallest, budget)
    if refusal is not None:
        return refusal[0].upper() + refusal[1:] + "."
    needed = estimate(shape, smallest).total
    if needed > budget:
        return (
            f"No trial fits in {format_size(budget)}: the smallest (r=8 on attention, batch 4 x 512 tokens) needs "
            f"{format_size(needed)}. Give more, or leave it empty for no limit."
        )
    return None

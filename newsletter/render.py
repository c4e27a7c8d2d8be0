"""Issue + templates -> Rendered: Jinja2 -> MJML -> HTML -> premailer, once per issue.

Per-recipient values (`subscriber.*`, `unsubscribe_url`) never go through that pipeline:
each `{{ … }}` that uses them is swapped for an opaque token before Jinja runs, the
tokens ride through Markdown, MJML and premailer untouched, and `Rendered.personalize`
fills them in for each recipient with one join.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from newsletter import markdown
from newsletter.config import Config
from newsletter.emailhtml import compile_mjml
from newsletter.errors import TemplateError
from newsletter.issue import Issue, split_stories
from newsletter.mergefields import (
    PER_RECIPIENT,
    TOKEN,
    MergeField,
    MergeRegistry,
    compile_all,
    fill,
    simple_field,
)
from newsletter.templatecache import template_cache
from newsletter.theme import palette

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"


class _ProtectingLoader(jinja2.BaseLoader):
    """Workspace templates first, then built-ins; every source has its merge fields tokenised."""

    def __init__(self, folders: list[Path], registry: MergeRegistry) -> None:
        self.inner = jinja2.FileSystemLoader([str(f) for f in folders])
        self.registry = registry

    def get_source(self, environment, template):
        source, filename, uptodate = self.inner.get_source(environment, template)
        return self.registry.protect(source, _short(filename)), filename, uptodate

    def list_templates(self):
        return self.inner.list_templates()


def _short(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# What markupsafe.escape changes.
_NEEDS_ESCAPE = re.compile(r"[&<>\"']").search


def _autoescape(name: str | None) -> bool:
    return bool(name) and not name.endswith(".txt.j2")


@dataclass(frozen=True)
class Personalized:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class FieldTags:
    """The merge fields the HTML and the text use, each as (a provider's name for it, field)."""

    html: list[tuple[str, int]]
    text: list[tuple[str, int]]
    size: int  # characters of all the names together


@dataclass
class Rendered:
    """One issue rendered once: final HTML and text with per-recipient tokens still in them."""

    issue: Issue | None  # None for a single message no issue file made (message.single_message)
    subject: str
    preheader: str | None
    html: str
    text: str
    mjml: str
    merge_fields: list[MergeField]
    context: dict[str, Any]
    html_parts: list[str] = field(default_factory=list, repr=False)
    text_parts: list[str] = field(default_factory=list, repr=False)
    subject_parts: list[str] = field(default_factory=list, repr=False)
    env: jinja2.Environment | None = field(default=None, repr=False)
    # Token index -> destination of the links [tracking] rewrote ("" for the open pixel):
    # per-recipient values that message.Campaign fills in, not merge fields.
    tracked: dict[int, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # TOKEN.split alternates literal, token index, literal, ...; personalize joins them.
        self.html_parts = TOKEN.split(self.html)
        self.text_parts = TOKEN.split(self.text)
        self.subject_parts = TOKEN.split(self.subject)
        self._subject_fields = [int(i) for i in self.subject_parts[1::2]]
        self._tags: dict[tuple[str, str], FieldTags] = {}
        used = {
            int(parts[i])
            for parts in (self.html_parts, self.text_parts, self.subject_parts)
            for i in range(1, len(parts), 2)
        } - set(self.tracked)
        self.used_fields = {i: self.merge_fields[i] for i in sorted(used)}
        # The common fields (`subscriber.x`, `subscriber.x | default("…")`, `unsubscribe_url`)
        # are looked up directly; anything else goes through Jinja.
        simple = [simple_field(m.source) for m in self.used_fields.values()]
        self._simple = None if None in simple else list(zip(self.used_fields, simple, strict=True))
        # All fields in one expression: one Jinja context per recipient instead of one per field.
        self._evaluate_all = None
        if self.env is not None and self.used_fields:
            sources = ", ".join(f"({m.source})" for m in self.used_fields.values())
            self._evaluate_all = compile_all(self.env, f"({sources},)")

    def tags(self, html_name: str, text_name: str) -> FieldTags:
        """The fields each part uses, named as a provider names them (`html_name.format(i)`):
        worked out once per issue and naming, as every recipient's message asks for them."""
        found = self._tags.get((html_name, text_name))
        if found is None:
            html = [
                (html_name.format(i), i) for i in sorted({int(i) for i in self.html_parts[1::2]})
            ]
            text = [
                (text_name.format(i), i) for i in sorted({int(i) for i in self.text_parts[1::2]})
            ]
            found = FieldTags(html, text, sum(len(name) for name, _ in [*html, *text]))
            self._tags[(html_name, text_name)] = found
        return found

    def values(self, subscriber: dict[str, str], unsubscribe_url: str) -> dict[int, Any]:
        """Evaluate the merge fields this issue uses for one recipient (TemplateError names one)."""
        if self._simple is not None:
            out = {}
            for index, (name, default) in self._simple:
                if name is None:
                    out[index] = unsubscribe_url
                elif name in subscriber:
                    out[index] = str(subscriber[name])
                elif default is not None:
                    out[index] = default
                else:
                    break  # undefined: let Jinja raise the error that names the field
            else:
                return out
        context = {**self.context, "subscriber": subscriber, "unsubscribe_url": unsubscribe_url}
        if self._evaluate_all is not None:
            try:
                values = self._evaluate_all(**context)
                return {
                    index: value if isinstance(value, Markup) else str(value)
                    for index, value in zip(self.used_fields, values, strict=True)
                }
            except (jinja2.UndefinedError, SecurityError):
                pass  # evaluate one by one below, to name the field that failed
        out = {}
        for index, merge in self.used_fields.items():
            try:
                value = merge.evaluate(**context)
                value = value if isinstance(value, Markup) else str(value)
            except jinja2.UndefinedError as exc:
                who = subscriber.get("email", "the recipient")
                raise TemplateError(
                    f"merge field {{{{ {merge.source} }}}} has no value for {who}: {exc.message}; "
                    'give it a default, e.g. | default("")',
                    where=merge.where,
                ) from None
            except SecurityError as exc:
                raise unsafe(exc, merge.where) from None
            out[index] = value
        return out

    def personalize(self, subscriber: dict[str, str], unsubscribe_url: str) -> Personalized:
        return self.fill_values(self.values(subscriber, unsubscribe_url))

    def part_values(self, values: dict[int, Any]) -> tuple[dict, dict, str]:
        """(values for HTML, escaped; values for text; the filled subject)."""
        # Per recipient, per field: most values are plain strings with nothing to escape,
        # kept as they are (the search is cheaper than building a Markup to throw away).
        html_values, text_values = {}, {}
        for i, v in values.items():
            if type(v) is str:
                text_values[i] = v
                html_values[i] = str(escape(v)) if _NEEDS_ESCAPE(v) else v
            else:
                text_values[i] = str(v)
                html_values[i] = str(escape(v))
        # No CR/LF from subscriber data can reach the Subject header.
        flat = {i: " ".join(text_values[i].split()) for i in self._subject_fields}
        return html_values, text_values, fill(self.subject_parts, flat)

    def fill_values(self, values: dict[int, Any]) -> Personalized:
        """Subject, HTML (values escaped) and text with evaluated merge values filled in."""
        html_values, text_values, subject = self.part_values(values)
        return Personalized(
            subject=subject,
            html=fill(self.html_parts, html_values),
            text=fill(self.text_parts, text_values),
        )

    def with_tokens(self, html_token: str, text_token: str) -> tuple[str, str, str]:
        """(subject, html, text) with tokens renamed, e.g. to a provider's substitution tags."""
        html_names = {i: html_token.format(i) for i in [*self.used_fields, *self.tracked]}
        text_names = {i: text_token.format(i) for i in self.used_fields}
        return (
            fill(self.subject_parts, text_names),
            fill(self.html_parts, html_names),
            fill(self.text_parts, text_names),
        )


class Renderer:
    """Holds the Jinja environment so that templates compile once per process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Issue files and workspace templates are input, not code: nothing in them may reach
        # Python internals (`cycler.__init__.__globals__`, `''.__class__.__mro__`, ...).
        self.registry = MergeRegistry(env=ImmutableSandboxedEnvironment())
        folders = [config.templates_dir, BUILTIN_TEMPLATES]
        self.env = ImmutableSandboxedEnvironment(
            loader=_ProtectingLoader(folders, self.registry),
            undefined=jinja2.StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            bytecode_cache=template_cache("html"),
        )
        self.env.filters["wrap"] = lambda text, width=markdown.WIDTH: markdown.wrap(text, width)
        self.text_env = self.env.overlay(autoescape=False, bytecode_cache=template_cache("text"))
        self._compiled: dict[tuple[str, str, int], jinja2.Template] = {}
        self.registry.env = self.env

    def render(self, issue: Issue) -> Rendered:
        config = self.config
        name = issue.template or config.template
        # who asked for the template: the issue's front matter or newsletter.toml
        asked = _short(issue.where("template") if issue.template else str(config.path or ""))
        context = base_context(config, issue)
        context["issue"] = self._issue_context(issue, context)
        mjml_source = self._render_template(f"{name}.mjml.j2", context, name, asked)
        text_name = f"{name}.txt.j2"
        if text_name not in self.env.loader.list_templates():
            text_name = "default.txt.j2"
        text = self._render_template(text_name, context, name, asked, env=self.text_env)
        html = compile_mjml(mjml_source, where=f"template {name}.mjml.j2")
        return Rendered(
            issue=issue,
            subject=context["issue"]["subject"],
            preheader=context["issue"]["preheader"],
            html=html,
            text=_tidy_text(text),
            mjml=mjml_source,
            merge_fields=list(self.registry.fields),
            context={k: v for k, v in context.items() if k not in PER_RECIPIENT},
            env=self.env,
        )

    def _render_template(self, template_name, context, name, asked=None, env=None):
        env = env or self.env
        try:
            template = env.get_template(template_name)
            return template.render(context)
        except jinja2.TemplateNotFound as exc:
            if exc.name == template_name:
                raise TemplateError(
                    f"template {name!r} not found: no {template_name} in "
                    f"{_short(str(self.config.templates_dir))}/ or the built-in templates",
                    where=asked or None,
                ) from None
            raise TemplateError(
                f"included template {exc.name!r} not found", where=template_name
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            where = f"{_short(exc.filename)}:{exc.lineno}" if exc.filename else template_name
            raise TemplateError(f"template syntax error: {exc.message}", where=where) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"undefined variable: {exc.message}", where=_template_line(exc)
            ) from None
        except SecurityError as exc:
            raise unsafe(exc, _template_line(exc)) from None

    def _string(self, source: str, context: dict, where: str, first_line: int = 1) -> str:
        """Render a piece of the issue file (body, subject) as a Jinja template."""
        try:
            template = self._compiled.get((source, where, first_line))
            if template is None:
                protected = self.registry.protect(source, where, first_line)
                padded = "\n" * (first_line - 1) + protected  # Jinja's line numbers = the file's
                code = self.text_env.compile(padded, name=where, filename=where)
                template = self.text_env.template_class.from_code(self.text_env, code, {}, None)
                self._compiled[(source, where, first_line)] = template
            return template.render(context)[first_line - 1 :]
        except jinja2.TemplateSyntaxError as exc:
            unclosed = _unclosed_tag(source)
            if unclosed:
                opener, line = unclosed
                closer = {"{{": "}}", "{%": "%}", "{#": "#}"}[opener]
                raise TemplateError(
                    f"{opener} is never closed with {closer}", where=f"{where}:{first_line + line}"
                ) from None
            raise TemplateError(
                f"template syntax error: {exc.message}", where=f"{where}:{exc.lineno}"
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"undefined variable: {exc.message}", where=_template_line(exc, where)
            ) from None
        except SecurityError as exc:
            raise unsafe(exc, _template_line(exc, where)) from None

    def _issue_context(self, issue: Issue, context: dict) -> dict:
        path = _short(str(issue.path))
        # The body may use the front matter: {{ issue.title }}, {{ issue.date }}.
        meta_context = {
            **context,
            "issue": {"title": issue.title, "date": issue.date, "slug": issue.slug},
        }
        body = self._string(issue.body, meta_context, path, issue.body_line)
        intro, stories = split_stories(body.split("\n"), first_line=issue.body_line)

        def meta(key: str) -> str | None:
            text = getattr(issue, key)
            line = issue.key_lines.get(key, issue.key_lines.get("title", 1))  # subject: title
            return self._string(text, context, path, line) if text else text

        intro_html, intro_text = markdown.convert(intro) if intro else ("", "")
        converted = [markdown.convert(s.body) for s in stories]
        return {
            "title": issue.title,
            "subject": " ".join(meta("subject").split()),
            "preheader": meta("preheader"),
            "date": issue.date,
            "date_display": f"{issue.date:%B} {issue.date.day}, {issue.date.year}"
            if issue.date
            else "",
            "slug": issue.slug,
            "author": issue.author,
            "lang": issue.lang or self.config.lang,
            "dir": issue.dir or self.config.dir,
            "intro_html": Markup(intro_html),
            "intro_text": intro_text,
            "stories": [
                {
                    "headline_html": Markup(markdown.inline_html(s.headline)),
                    "headline_text": markdown.inline_text(s.headline),
                    "link": s.link,
                    "image": s.image,
                    "image_alt": s.image_alt,
                    "image_caption": s.image_caption,
                    "image_text": markdown.image_text(s.image_alt, s.image),
                    "body_html": Markup(body_html),
                    "body_text": body_text,
                    "line": s.line,
                }
                for s, (body_html, body_text) in zip(stories, converted, strict=True)
            ],
        }


_DELIMITER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


def _unclosed_tag(source: str) -> tuple[str, int] | None:
    """(opening delimiter, 0-based line) of a `{{`, `{%` or `{#` that is never closed."""
    opened = None
    for match in _DELIMITER.finditer(source):
        if match.group() in ("{{", "{%", "{#"):
            if opened is not None:
                break
            opened = match
        else:
            opened = None
    if opened is None:
        return None
    return opened.group(), source.count("\n", 0, opened.start())


def base_context(config: Config, issue: Issue) -> dict[str, Any]:
    """What templates see besides the issue: the publication and the per-recipient names."""
    base = (config.base_url or "").rstrip("/")
    return {
        "publication": {
            "name": config.name,
            "from_name": config.from_name or config.name,
            "from_email": config.from_email,
            "reply_to": config.reply_to,
            "postal_address": config.postal_address,
            "base_url": base or None,
        },
        "view_url": f"{base}/archive/{issue.slug}.html" if base and issue.archive else None,
        # Theme values are checked in config (colours, font names): safe inside CSS as they are.
        "theme": {k: v if k == "logo_url" else Markup(v) for k, v in palette(config.theme).items()},
        # After the preheader: invisible characters that fill the inbox's preview line.
        "preheader_filler": Markup("&#847;&#8204;&#160;" * 90),
    }


def unsafe(exc: SecurityError, where: str) -> TemplateError:
    """The sandbox refused an attribute or call: one line naming where it was asked for."""
    return TemplateError(f"not allowed in templates: {exc.message}", where=where)


def _template_line(exc: BaseException, fallback: str = "template") -> str:
    """file:line of the innermost template frame in a Jinja traceback."""
    where = fallback
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or filename == fallback:
            where = f"{_short(filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return out + "\n"

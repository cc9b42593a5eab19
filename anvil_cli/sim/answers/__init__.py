"""What the simulated model answers: the reply built from the request (text, tool calls drawn
from the tools' schemas, usage with prompt caching), steered by `@sim{...}` directives."""

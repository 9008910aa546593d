"""``thirdway demo``: an agent paying a bill that carries a prompt injection, behind the gate.

:mod:`~thirdway.demo.scenario` holds the bank, its tools and the scripted agent's chains;
:mod:`~thirdway.demo.model_agent` lets a language model propose a chain instead;
:mod:`~thirdway.demo.runner` plays the story against a fully wired gateway and narrates it.
"""

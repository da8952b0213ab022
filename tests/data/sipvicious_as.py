#!/usr/bin/env python3
"""Runs one SIPVicious 0.3 tool (Debian package `sipvicious`) from a chosen source address,
optionally with a chosen User-Agent, for the guard tests.

usage: sipvicious_as.py TOOL BIND_IP USER_AGENT [tool arguments...]
  TOOL        svwar or svcrack
  BIND_IP     the local address to send from (svwar 0.3.3 ignores its own -b option)
  USER_AGENT  '-' keeps the tool's own (friendly-scanner); anything else replaces it

The tool's code runs unchanged; only its request builder's User-Agent and its socket's
binding address are set here.
"""
import importlib
import sys

sys.path.insert(0, "/usr/share/sipvicious")

tool_name, bind_ip, user_agent = sys.argv[1], sys.argv[2], sys.argv[3]
tool = importlib.import_module("sipvicious." + tool_name)

if user_agent != "-":
    original_request = tool.makeRequest

    def spoofed_request(*args, **kwargs):
        kwargs["useragent"] = user_agent
        return original_request(*args, **kwargs)

    tool.makeRequest = spoofed_request

scanner_class = {"svwar": "TakeASip", "svcrack": "ASipOfRedWine"}[tool_name]
cls = getattr(tool, scanner_class)
original_init = cls.__init__


def bound_init(self, *args, **kwargs):
    kwargs["bindingip"] = bind_ip
    original_init(self, *args, **kwargs)


cls.__init__ = bound_init
sys.argv = [tool_name] + sys.argv[4:]
sys.exit(tool.main())

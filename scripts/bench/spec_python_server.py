"""The spec's Python behaviour (AIMS-IRP-001 §8.5.2.1 SecurityIncidentDetector plus the manual-reporting
incident record) served as a `screen_prompt` tool on the official MCP Python SDK (mcp 2.x, MCPServer).
Used only as a speed baseline: drive it with the same client as the Rust server,

    target/release/examples/load_stdio --server .e2e/py/bin/python scripts/bench/spec_python_server.py

Detected incidents are appended to an in-memory list, as the spec's queue_incident does.
"""
import uuid
from datetime import datetime

from mcp.server.mcpserver import MCPServer

INCIDENT_PATTERNS = {
    "prompt_injection": ["ignore previous instructions", "system prompt", "you are now", "act as if",
                         "bypass security"],
    "data_access_attempt": ["show me all", "dump the database", "list all clients", "export data"],
    "privilege_escalation": ["admin access", "root privileges", "override permissions"],
}
INCIDENTS = []


def detect_security_incident(user_input: str, user_context: dict) -> dict:
    report = {"incident_detected": False, "incident_type": None, "severity": "low", "confidence": 0.0,
              "details": {}}
    for pattern in INCIDENT_PATTERNS["prompt_injection"]:
        if pattern.lower() in user_input.lower():
            report.update(incident_detected=True, incident_type="prompt_injection", severity="high",
                          confidence=0.9, details={"pattern_matched": pattern, "user_context": user_context})
            break
    if not report["incident_detected"]:
        for pattern in INCIDENT_PATTERNS["data_access_attempt"]:
            if pattern.lower() in user_input.lower():
                report.update(incident_detected=True, incident_type="data_access_attempt", severity="medium",
                              confidence=0.8, details={"pattern_matched": pattern, "user_context": user_context})
                break
    return report


server = MCPServer("spec-python-baseline")


@server.tool()
def screen_prompt(text: str, source: str = "user", user_id: str = "", session_id: str = "") -> dict:
    """Screen a prompt with the spec's pattern list."""
    r = detect_security_incident(text, {"user_id": user_id, "session_id": session_id})
    incident_id = None
    if r["incident_detected"]:
        incident_id = f"INC-{uuid.uuid4().hex[:8]}"
        INCIDENTS.append({"incident_id": incident_id, "incident_type": r["incident_type"],
                          "severity": r["severity"], "detection_time": datetime.now().isoformat(),
                          "status": "new"})
    return {"verdict": "block" if r["incident_detected"] else "allow", "risk_score": r["confidence"],
            "categories": [r["incident_type"]] if r["incident_type"] else [], "incident_id": incident_id}


if __name__ == "__main__":
    server.run("stdio")

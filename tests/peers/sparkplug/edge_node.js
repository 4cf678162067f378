// A third-party Sparkplug B edge node for the collector's tests: Eclipse Tahu's JavaScript
// client (npm sparkplug-client 3.x), used the way its README's example application uses it.
//
//   node edge_node.js <broker port> <group> <edge node> <device> <metrics JSON> [period ms]
//
// metrics JSON: [{"name": "Motor/Speed", "type": "Double"}, ...]; types Double, Float, Int32,
// UInt32, Int64, UInt64, Boolean, String. Each metric gets alias 1, 2, ... in the DBIRTH
// (names and aliases), and DDATA carries aliases only, as a bandwidth-minded edge node does:
// a host that missed the birth cannot read it and has to ask for a rebirth.
//
// stdout: one JSON line per event ({"event": "birth"|"rebirth"|"ddata"|"ncmd", ...}).
// stdin, one command a line:
//   skip <n>   the next message's seq is <n> higher than it should be (a lost message)
//   ddeath     publish DDEATH for the device and stop its DDATA
//   stop       stop cleanly (NDEATH published by the library, then disconnect)
// SIGKILL the process for an unclean death: the broker then sends the library's will (NDEATH).
"use strict";

const readline = require("readline");
const sparkplug = require("sparkplug-client");

const [port, groupId, edgeNode, deviceId, metricsJson, periodArg] = process.argv.slice(2);
const metricDefs = JSON.parse(metricsJson);
const period = Number(periodArg || 200);

function say(event, extra) {
  process.stdout.write(JSON.stringify(Object.assign({ event }, extra || {})) + "\n");
}

const client = sparkplug.newClient({
  serverUrl: `mqtt://127.0.0.1:${port}`,
  username: "",
  password: "",
  groupId,
  edgeNode,
  clientId: `peer-${process.pid}`,
  version: "spBv1.0",
  publishDeath: true,
});

let tick = 0;
let deviceAlive = true;

function value(def, i) {
  switch (def.type) {
    case "Double": case "Float": return 1000 + (i % 50) + 0.5;
    case "Int32": return def.name.toLowerCase().includes("state") ? 1 : -(i % 1000);
    case "UInt32": case "UInt64": case "Int64": return i;
    case "Boolean": return i % 2 === 0;
    case "String": return `L-${1000 + i}`;
    default: throw new Error(`type ${def.type}`);
  }
}

function metrics(withNames) {
  const now = Date.now();
  return metricDefs.map((def, idx) => {
    const m = { alias: idx + 1, type: def.type, value: value(def, tick), timestamp: now };
    if (withNames) m.name = def.name;
    return m;
  });
}

function births(event) {
  const now = Date.now();
  client.publishNodeBirth({
    timestamp: now,
    metrics: [{ name: "Node Control/Rebirth", type: "Boolean", value: false }],
  });
  deviceAlive = true;
  client.publishDeviceBirth(deviceId, { timestamp: now, metrics: metrics(true) });
  say(event, { seq: client.seq });
}

client.on("birth", () => births("birth"));

client.on("ncmd", (payload) => {
  const names = (payload.metrics || []).map((m) => m.name);
  say("ncmd", { metrics: names });
  for (const m of payload.metrics || []) {
    if (m.name === "Node Control/Rebirth" && m.value === true) births("rebirth");
  }
});

setInterval(() => {
  if (!client.connected || !deviceAlive) return;
  tick += 1;
  client.publishDeviceData(deviceId, { timestamp: Date.now(), metrics: metrics(false) });
  if (tick % 5 === 0) say("ddata", { tick, seq: client.seq });
}, period);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "skip") {
    // the library keeps the next seq in client.seq (0..255, wrapping at 256) and offers no
    // call to skip: advancing it is what losing <n> messages looks like to a host
    client.seq = (client.seq + Number(arg)) % 256;
    say("skipped", { seq: client.seq });
  } else if (cmd === "ddeath") {
    deviceAlive = false;
    client.publishDeviceDeath(deviceId, { timestamp: Date.now(), metrics: [] });
    say("ddeath");
  } else if (cmd === "stop") {
    client.stop();
    setTimeout(() => process.exit(0), 200);
  }
});

// A third-party OPC UA server for Gwanje's tests, built with node-opcua (another stack than
// our asyncua). tests/fixtures/node_opcua.py starts it; it prints "READY <json>" once it
// listens. Its address space looks like a plant gateway nobody wrote for us: mixed-case
// names with spaces, dots and underscores, numeric and string node ids, many data types.
//
//   Objects/Press Line 2/Press_201, .../Press_202   (same variables: one machine class)
//       Motor.Speed  Double (rpm, EngineeringUnits)   Tonnage  Double AnalogItem (t, EURange)
//       PartCount    UInt64, from 2**63 up            State    Int32 (codes 1..3)
//       Running      Boolean                          Lot      String
//       LastCycle    DateTime                         Profile  Double[] (an array)
//   Objects/Oven 7   Temperature Float (°C), Door Open Boolean, Recipe LocalizedText,
//       BatchId Guid, Health StatusCode, Snapshot ByteString, Zone SByte, Fan UInt16,
//       Energy Int64, Shift QualifiedName
//
// Options: --port N  --pki DIR (its certificate; a new DIR = a new certificate)
//          --uri URI (our namespace)  --pad N (register N other namespaces first, so ours
//          gets index 2+N)  --secure (Basic256Sha256 Sign/SignAndEncrypt only)  --tick MS
"use strict";
const path = require("path");
const {
  OPCUAServer, OPCUACertificateManager, DataType, Variant, VariantArrayType, StatusCodes,
  SecurityPolicy, MessageSecurityMode, standardUnits, LocalizedText, QualifiedName,
} = require("node-opcua");

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith("--") ? true : v;
}

const port = parseInt(arg("port", "4840"), 10);
const pki = path.resolve(arg("pki", path.join(__dirname, "pki")));
const uri = arg("uri", "urn:peer:press-gateway");
const pad = parseInt(arg("pad", "0"), 10);
const secure = arg("secure", false) === true;
const tickMs = parseInt(arg("tick", "200"), 10);

async function main() {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "own"), automaticallyAcceptUnknownCertificate: true,
  });
  const userCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "user"), automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port,
    resourcePath: "/peer",
    serverCertificateManager: certificateManager,
    userCertificateManager,
    serverInfo: {
      applicationUri: "urn:peer:node-opcua-gateway",
      applicationName: { text: "Press Gateway" },
      productUri: "urn:peer:node-opcua",
    },
    buildInfo: { productName: "Press Gateway (node-opcua test peer)" },
    securityPolicies: secure ? [SecurityPolicy.Basic256Sha256] : [SecurityPolicy.None],
    securityModes: secure ? [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt]
      : [MessageSecurityMode.None],
    allowAnonymous: true,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  for (let i = 0; i < pad; i++) addressSpace.registerNamespace(`urn:peer:padding:${i}`);
  const ns = addressSpace.registerNamespace(uri);
  const objects = addressSpace.rootFolder.objects;
  const updaters = [];

  function variable(parent, browseName, nodeId, dataType, initial, next, opts = {}) {
    const v = ns.addVariable({
      componentOf: parent, browseName, nodeId, dataType,
      valueRank: opts.array ? 1 : -1, arrayDimensions: opts.array ? [0] : null,
    });
    const variant = (value) => new Variant({
      dataType: DataType[dataType], value,
      arrayType: opts.array ? VariantArrayType.Array : VariantArrayType.Scalar,
    });
    v.setValueFromSource(variant(initial), StatusCodes.Good, new Date());
    if (next) {
      let k = 0;
      updaters.push(() => { k += 1; v.setValueFromSource(variant(next(k)), StatusCodes.Good, new Date()); });
    }
    return v;
  }

  const line = ns.addObject({ organizedBy: objects, browseName: "Press Line 2", nodeId: "s=PressLine2" });
  [201, 202].forEach((no, idx) => {
    const m = ns.addObject({ componentOf: line, browseName: `Press_${no}`, nodeId: `s=Press_${no}` });
    const base = 70000 + 100 * idx;  // above the numeric ids node-opcua assigns itself
    variable(m, "Motor.Speed", `s=Press_${no}.Motor.Speed`, "Double", 1450.5, (k) => 1450.5 + (k % 10));
    const speed = m.getComponentByName("Motor.Speed");
    ns.addVariable({
      propertyOf: speed, browseName: { name: "EngineeringUnits", namespaceIndex: 0 }, dataType: "EUInformation",
      value: { dataType: DataType.ExtensionObject, value: standardUnits.revolutions_per_minute },
    });
    const ton = ns.addAnalogDataItem({
      componentOf: m, browseName: "Tonnage", nodeId: `i=${base + 1}`, dataType: "Double",
      engineeringUnitsRange: { low: 0, high: 800 },
      engineeringUnits: { ...standardUnits.kilogram, displayName: new LocalizedText({ text: "t" }) },
    });
    ton.setValueFromSource(new Variant({ dataType: DataType.Double, value: 250 }), StatusCodes.Good, new Date());
    updaters.push(((k) => () => { k += 1; ton.setValueFromSource(new Variant({ dataType: DataType.Double, value: 250 + (k % 7) }), StatusCodes.Good, new Date()); })(0));
    // UInt64 above 2**63: node-opcua takes [high 32 bits, low 32 bits]; steps of 2048 stay
    // exact as a float (its spacing there)
    variable(m, "PartCount", `i=${base + 2}`, "UInt64", [0x80000000, 0], (k) => [0x80000000, 2048 * k]);
    variable(m, "State", `i=${base + 3}`, "Int32", 1, (k) => 1 + (k % 3));
    variable(m, "Running", `s=Press_${no}.Running`, "Boolean", true, (k) => k % 2 === 0);
    variable(m, "Lot", `s=Press_${no}.Lot`, "String", `LOT-${no}-0`, (k) => `LOT-${no}-${k}`);
    variable(m, "LastCycle", `s=Press_${no}.LastCycle`, "DateTime", new Date(), () => new Date());
    variable(m, "Profile", `s=Press_${no}.Profile`, "Double", [1, 2, 3], (k) => [k, k + 1], { array: true });
  });

  const oven = ns.addObject({ organizedBy: objects, browseName: "Oven 7", nodeId: "s=Oven7" });
  variable(oven, "Temperature", "s=Oven7.Temperature", "Float", 180.5, (k) => 180.5 + (k % 4));
  const temp = oven.getComponentByName("Temperature");
  ns.addVariable({
    propertyOf: temp, browseName: { name: "EngineeringUnits", namespaceIndex: 0 }, dataType: "EUInformation",
    value: { dataType: DataType.ExtensionObject, value: standardUnits.degree_celsius },
  });
  variable(oven, "Door Open", "s=Oven7.DoorOpen", "Boolean", false, (k) => k % 5 === 0);
  variable(oven, "Recipe", "s=Oven7.Recipe", "LocalizedText", new LocalizedText({ text: "Bake A", locale: "en" }),
    (k) => new LocalizedText({ text: `Bake ${k % 2 ? "A" : "B"}`, locale: "en" }));
  variable(oven, "BatchId", "s=Oven7.BatchId", "Guid", "72962B91-FA75-4AE6-8D28-B404DC7DAF63");
  variable(oven, "Health", "s=Oven7.Health", "StatusCode", StatusCodes.Good,
    (k) => (k % 2 ? StatusCodes.BadSensorFailure : StatusCodes.Good));
  variable(oven, "Snapshot", "s=Oven7.Snapshot", "ByteString", Buffer.from([1, 2, 3]), (k) => Buffer.from([k % 256]));
  variable(oven, "Zone", "s=Oven7.Zone", "SByte", -3, (k) => -3 + (k % 3));
  variable(oven, "Fan", "s=Oven7.Fan", "UInt16", 65535, (k) => 65535 - (k % 3));
  variable(oven, "Energy", "s=Oven7.Energy", "Int64", [0xFFFFFFFF, 0xFFFFFF00], (k) => [0xFFFFFFFF, 0xFFFFFF00 + (k % 16)]);
  variable(oven, "Shift", "s=Oven7.Shift", "QualifiedName", new QualifiedName({ name: "Night", namespaceIndex: 1 }));

  await server.start();
  setInterval(() => updaters.forEach((u) => u()), tickMs);
  const nsIndex = addressSpace.getNamespaceIndex(uri);
  const endpoint = server.getEndpointUrl().replace(/\/\/[^:/]+:/, "//127.0.0.1:");
  process.stdout.write(`READY ${JSON.stringify({ port, endpoint, namespace: uri, index: nsIndex })}\n`);
  const stop = async () => { await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => { console.error(e); process.exit(1); });

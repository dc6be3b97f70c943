// Compile Token.sol with solc-js (npm `solc`, pinned in the Makefile) into token.json.
//
//   NODE_PATH=.venv/npm/node_modules node golem_trio/localnet/yagna/contracts/build_token.js
//
// `make token` runs exactly this. The output records the compiler version and the SHA-256 of
// the source, so a test can tell when token.json is older than Token.sol.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

let solc;
try {
  solc = require("solc");
} catch (err) {
  console.error("npm package solc not found; run `make token` (it installs it under .venv/npm)");
  process.exit(2);
}

const SOURCE_NAME = "Token.sol";
const CONTRACT = "LocalTestToken";
const here = __dirname;
const source = fs.readFileSync(path.join(here, SOURCE_NAME), "utf8");

const input = {
  language: "Solidity",
  sources: { [SOURCE_NAME]: { content: source } },
  settings: {
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.methodIdentifiers"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = output.errors || [];
for (const problem of problems) {
  console.error(problem.formattedMessage);
}
if (problems.some((p) => p.severity === "error")) {
  process.exit(1);
}

const contract = output.contracts[SOURCE_NAME][CONTRACT];
const artifact = {
  contractName: CONTRACT,
  compiler: `solc-js ${solc.version()}`,
  sourceSha256: crypto.createHash("sha256").update(source, "utf8").digest("hex"),
  abi: contract.abi,
  methodIdentifiers: contract.evm.methodIdentifiers,
  bytecode: "0x" + contract.evm.bytecode.object,
};
const target = path.join(here, "token.json");
fs.writeFileSync(target, JSON.stringify(artifact, null, 2) + "\n");
console.log(`wrote ${target}: ${contract.evm.bytecode.object.length / 2} bytes of init code`);

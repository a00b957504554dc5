// Starts `fleming lsp` (stdio) for .flm files. The command comes from the setting
// `fleming.server.command` (default ["fleming", "lsp"]), run in the workspace folder.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("fleming").get("server.command");
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const server = { command, args, transport: TransportKind.stdio,
                   options: folder ? { cwd: folder.uri.fsPath } : {} };
  client = new LanguageClient("fleming", "Fleming language server", server, {
    documentSelector: [{ scheme: "file", language: "flm" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };

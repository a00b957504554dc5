-- Drive `fleming lsp` from Neovim's built-in client (0.7: start_client + buf_attach_client).
-- Reads FLEMING_SPEC (the file to open), FLEMING_ROOT (the project), FLEMING_PYTHON and
-- FLEMING_LINE/FLEMING_COL (0-based hover position); writes FLEMING_OUT as lines
-- "diagnostic<TAB>line<TAB>col<TAB>severity<TAB>message" and "hover<TAB>text", then applies the
-- first code action offered at the first diagnostic and writes "action<TAB>title",
-- "line<TAB>the diagnostic's line after the edit" and "remaining<TAB>diagnostics after re-check".
local env = vim.env
local out = {}
local function finish(code)
  vim.fn.writefile(out, env.FLEMING_OUT)
  vim.cmd(code == 0 and "qall!" or "cquit!")
end

vim.filetype = vim.filetype or {}
vim.cmd("autocmd BufRead,BufNewFile *.flm setfiletype flm")
local client_id = vim.lsp.start_client({
  name = "fleming",
  cmd = { env.FLEMING_PYTHON, "-m", "fleming_dsl.cli", "lsp" },
  root_dir = env.FLEMING_ROOT,
  cmd_env = { PYTHONPATH = env.PYTHONPATH },
})
if not client_id then
  table.insert(out, "error\tstart_client failed")
  return finish(1)
end
vim.cmd("edit " .. vim.fn.fnameescape(env.FLEMING_SPEC))
local buf = vim.api.nvim_get_current_buf()
vim.lsp.buf_attach_client(buf, client_id)

local got = vim.wait(30000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
if not got then
  table.insert(out, "error\tno diagnostics within 30 s")
  return finish(1)
end
for _, d in ipairs(vim.diagnostic.get(buf)) do
  table.insert(out, table.concat({ "diagnostic", d.lnum, d.col, d.severity, (d.message:gsub("\n", " | ")) }, "\t"))
end

local params = {
  textDocument = { uri = vim.uri_from_bufnr(buf) },
  position = { line = tonumber(env.FLEMING_LINE), character = tonumber(env.FLEMING_COL) },
}
local responses = vim.lsp.buf_request_sync(buf, "textDocument/hover", params, 20000)
for _, response in pairs(responses or {}) do
  if response.result and response.result.contents then
    local value = response.result.contents.value or ""
    table.insert(out, "hover\t" .. value:gsub("\n", " | "))
  end
end
-- the quick fix of the first diagnostic, as :lua vim.lsp.buf.code_action() would apply it
local first = vim.diagnostic.get(buf)[1]
local context = { diagnostics = vim.lsp.diagnostic.get_line_diagnostics(buf, first.lnum) }
local at = { line = first.lnum, character = first.col }
local actions = vim.lsp.buf_request_sync(buf, "textDocument/codeAction", {
  textDocument = { uri = vim.uri_from_bufnr(buf) }, range = { start = at, ["end"] = at }, context = context,
}, 20000)
local client = vim.lsp.get_client_by_id(client_id)
for _, response in pairs(actions or {}) do
  local action = (response.result or {})[1]
  if action and action.edit then
    table.insert(out, "action\t" .. action.title)
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
    table.insert(out, "line\t" .. vim.api.nvim_buf_get_lines(buf, first.lnum, first.lnum + 1, false)[1])
    local cleared = vim.wait(30000, function() return #vim.diagnostic.get(buf) == 0 end, 50)
    table.insert(out, "remaining\t" .. #vim.diagnostic.get(buf) .. (cleared and "" or " (timed out)"))
  end
end
vim.lsp.stop_client(client_id)
finish(0)

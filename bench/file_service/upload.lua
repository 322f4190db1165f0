-- POST /v1/file_tool/upload_file with a 1 KiB body. Each wrk thread cycles
-- through 500 names of its own, so the run starts with inserts and turns
-- into updates of existing rows: the upsert's two paths. One write
-- transaction (and one staged file renamed into place) per request.
-- usage: wrk ... -s upload.lua
local counter = 0
local threads = 0
local content = string.rep("x", 1024)

-- setup() runs in wrk's main Lua state; thread:set() gives each thread's own
-- state a global `thread_id`.
function setup(thread)
    thread:set("thread_id", threads)
    threads = threads + 1
end

function request()
    counter = counter + 1
    local body = string.format(
        '{"request_id": "load-%d", "file_name": "f-%d.md", "description": "wrk", "content": "%s"}',
        thread_id, counter % 500, content)
    return wrk.format("POST", "/v1/file_tool/upload_file",
                      {["Content-Type"] = "application/json"}, body)
end

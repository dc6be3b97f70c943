// SPDX-License-Identifier: MIT
// The payment token of golem_trio's local chain: a plain ERC-20 that anyone may mint.
// It stands in for tGLM on the local stand-in for Holesky (chain id 17000); never deploy it
// anywhere else. Rebuild the checked-in artifact (token.json) with `make token`.
pragma solidity 0.8.26;

contract LocalTestToken {
    string public constant name = "golem_trio local tGLM";
    string public constant symbol = "tGLM";
    uint8 public constant decimals = 18;

    uint256 public totalSupply;
    mapping(address account => uint256) public balanceOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// Create `amount` new tokens for `to`. Open to every caller: this is a test token.
    function mint(address to, uint256 amount) external {
        require(to != address(0), "mint to zero");
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "allowance too low");
            allowance[from][msg.sender] = allowed - amount;
        }
        _move(from, to, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) private {
        require(to != address(0), "transfer to zero");
        uint256 held = balanceOf[from];
        require(held >= amount, "balance too low");
        balanceOf[from] = held - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
